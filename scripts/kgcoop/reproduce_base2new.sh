#!/bin/bash
# KgCoOp: base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/kgcoop/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-KgCoOp}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_reproduce "$@"
