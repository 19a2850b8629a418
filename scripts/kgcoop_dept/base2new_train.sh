#!/bin/bash
# KgCoOp with DePT (ExtrasLinearProbeKgCoOp): train on the base classes of DATASET (16 shots per class).
# Usage: bash scripts/kgcoop_dept/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeKgCoOp}
DEFAULT_CFG=vit_b16_ep10_ctxv1_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
