#!/bin/bash
# MaPLe with DePT (ExtrasLinearProbeMaPLe): train on ImageNet, all classes, 16 shots (cross-dataset source; the
# probe trains on ImageNet's classes).
# Usage: bash scripts/maple_dept/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeMaPLe}
DEFAULT_CFG=vit_b16_c2_ep10_batch4_2ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
