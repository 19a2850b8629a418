#!/bin/bash
# ZeroshotCLIP: base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/zsclip/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ZeroshotCLIP}
DEFAULT_CFG=vit_b16  # CFG overrides it
SHOTS=${SHOTS:-16}
CFG_DIR=${CFG_DIR:-CoOp}  # the zero-shot CLIP uses CoOp's configs
ZERO_SHOT=${ZERO_SHOT:-1}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
