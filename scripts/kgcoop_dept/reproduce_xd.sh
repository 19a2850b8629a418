#!/bin/bash
# KgCoOp with DePT (ExtrasLinearProbeKgCoOp): ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/kgcoop_dept/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeKgCoOp}
DEFAULT_CFG=vit_b16_ep10_ctxv1_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
