#!/bin/bash
# MaPLe with DePT (ExtrasLinearProbeMaPLe): ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/maple_dept/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeMaPLe}
DEFAULT_CFG=vit_b16_c2_ep10_batch4_2ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
