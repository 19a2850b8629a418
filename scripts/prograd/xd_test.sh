#!/bin/bash
# ProGrad: evaluate the ImageNet model on DATASET.
# Usage: bash scripts/prograd/xd_test.sh DATASET SEED
# The official robustness runs: the ImageNet model of rn50_ep50, 4 shots
# (its eval.sh). Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ProGrad}
DEFAULT_CFG=rn50_ep50  # CFG overrides it
SHOTS=${SHOTS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
