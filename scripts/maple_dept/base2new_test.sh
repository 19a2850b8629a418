#!/bin/bash
# MaPLe with DePT (ExtrasLinearProbeMaPLe): evaluate the base-class model on the new classes of DATASET
# (similarity logits only: DePT's rule for new classes).
# Usage: bash scripts/maple_dept/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeMaPLe}
DEFAULT_CFG=vit_b16_c2_ep10_batch4_2ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
