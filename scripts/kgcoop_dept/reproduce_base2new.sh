#!/bin/bash
# KgCoOp with DePT (ExtrasLinearProbeKgCoOp): base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/kgcoop_dept/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeKgCoOp}
DEFAULT_CFG=vit_b16_ep10_ctxv1_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
