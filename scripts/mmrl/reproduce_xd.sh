#!/bin/bash
# MMRL: ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/mmrl/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
DEFAULT_CFG=vit_b16_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
MMRL_TASK=CD
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
mmrl_script_opts CD imagenet
xd_reproduce "$@"
