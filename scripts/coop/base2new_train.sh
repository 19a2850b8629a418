#!/bin/bash
# CoOp: train on the base classes of DATASET (16 shots per class).
# Usage: bash scripts/coop/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh. (CoCoOp's CoOp runs used
# CFG=vit_b16_ep50_ctxv1 for imagenet.)
TRAINER=${TRAINER:-CoOp}
DEFAULT_CFG=vit_b16_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
