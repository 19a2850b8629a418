#!/bin/bash
# MaPLe: evaluate the ImageNet model on DATASET (cross-dataset / domain shift).
# Usage: bash scripts/maple/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-MaPLe}
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
