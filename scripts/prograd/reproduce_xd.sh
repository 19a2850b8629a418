#!/bin/bash
# ProGrad: xd_train + xd_test over XD_DATASETS x SEEDS.
# Usage: bash scripts/prograd/reproduce_xd.sh 
# The official robustness runs: the ImageNet model of rn50_ep50, 4 shots
# (its eval.sh). Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ProGrad}
DEFAULT_CFG=rn50_ep50  # CFG overrides it
SHOTS=${SHOTS:-4}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
