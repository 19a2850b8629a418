#!/bin/bash
# ZeroshotCLIP: zero-shot accuracy on the base classes of DATASET.
# Usage: bash scripts/zsclip/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ZeroshotCLIP}
DEFAULT_CFG=vit_b16  # CFG overrides it
SHOTS=${SHOTS:-16}
CFG_DIR=${CFG_DIR:-CoOp}  # the zero-shot CLIP uses CoOp's configs
ZERO_SHOT=${ZERO_SHOT:-1}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
