#!/bin/bash
# MMRL: train on the base classes of DATASET (16 shots per class).
# Usage: bash scripts/mmrl/base2new_train.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
source "$(dirname "${BASH_SOURCE[0]}")/official_config.sh"  # vit_b16_imagenet on ImageNet
SHOTS=${SHOTS:-16}
MMRL_TASK=B2N
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
b2n_train "$@"
