#!/bin/bash
# CoCoOp: train on ImageNet, all classes, 16 shots (cross-dataset source).
# Usage: bash scripts/cocoop/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-CoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
