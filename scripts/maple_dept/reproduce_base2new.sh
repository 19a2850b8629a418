#!/bin/bash
# MaPLe with DePT (ExtrasLinearProbeMaPLe): base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/maple_dept/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeMaPLe}
DEFAULT_CFG=vit_b16_c2_ep10_batch4_2ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
