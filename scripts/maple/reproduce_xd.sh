#!/bin/bash
# MaPLe: ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/maple/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-MaPLe}
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
