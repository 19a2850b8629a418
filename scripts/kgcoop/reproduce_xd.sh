#!/bin/bash
# KgCoOp: ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/kgcoop/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh. The official repository ships
# no cross-dataset config: its base-to-novel one (W 8.0) is the default.
TRAINER=${TRAINER:-KgCoOp}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
