#!/bin/bash
# MaPLe with DePT (ExtrasLinearProbeMaPLe): train on the base classes of DATASET (16 shots per class).
# Usage: bash scripts/maple_dept/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeMaPLe}
DEFAULT_CFG=vit_b16_c2_ep10_batch4_2ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_train "$@"
