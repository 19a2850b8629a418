#!/bin/bash
# ZeroshotCLIP: zero-shot accuracy on ImageNet (cross-dataset source).
# Usage: bash scripts/zsclip/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ZeroshotCLIP}
DEFAULT_CFG=vit_b16  # CFG overrides it
SHOTS=${SHOTS:-16}
CFG_DIR=${CFG_DIR:-CoOp}  # the zero-shot CLIP uses CoOp's configs
ZERO_SHOT=${ZERO_SHOT:-1}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
