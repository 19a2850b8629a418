#!/bin/bash
# CoOp with DePT (ExtrasLinearProbeCoOp): train on ImageNet, all classes, 16 shots (cross-dataset source; the
# probe trains on ImageNet's classes).
# Usage: bash scripts/coop_dept/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoOp}
DEFAULT_CFG=vit_b16_ep10_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
