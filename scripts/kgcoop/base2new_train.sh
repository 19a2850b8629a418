#!/bin/bash
# KgCoOp: train on the base classes of DATASET (16 shots per class).
# Usage: bash scripts/kgcoop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-KgCoOp}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
