#!/bin/bash
# MMRL: evaluate the ImageNet model on DATASET (cross-dataset / domain shift).
# Usage: bash scripts/mmrl/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
DEFAULT_CFG=vit_b16_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
MMRL_TASK=CD
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
xd_test "$@"
