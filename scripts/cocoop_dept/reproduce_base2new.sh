#!/bin/bash
# CoCoOp with DePT (ExtrasLinearProbeCoCoOp): base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/cocoop_dept/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
