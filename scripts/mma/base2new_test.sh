#!/bin/bash
# MMA: evaluate the base-class model on the new classes of DATASET.
# Usage: bash scripts/mma/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# ImageNet: the official vit_b16_ep5_imnet recipe (batch 128; official_imagenet.sh).
TRAINER=${TRAINER:-MultiModalAdapter}
DEFAULT_CFG=vit_b16_ep5  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_imagenet.sh"
b2n_test "$@"
