#!/bin/bash
# ProGrad: train on ImageNet (all classes) for the distribution-shift evaluation.
# Usage: bash scripts/prograd/xd_train.sh SEED
# The official robustness runs: the ImageNet model of rn50_ep50, 4 shots
# (its eval.sh). Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ProGrad}
DEFAULT_CFG=rn50_ep50  # CFG overrides it
SHOTS=${SHOTS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
