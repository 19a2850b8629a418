#!/bin/bash
# CoCoOp with DePT (ExtrasLinearProbeCoCoOp): ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/cocoop_dept/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
