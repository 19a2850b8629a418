#!/bin/bash
# MMA: base-to-novel runs on the 11 datasets x seeds 1-3, then the table.
# Usage: bash scripts/mma/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# ImageNet: the official vit_b16_ep5_imnet recipe (batch 128; official_imagenet.sh).
TRAINER=${TRAINER:-MultiModalAdapter}
DEFAULT_CFG=vit_b16_ep5  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_imagenet.sh"
b2n_reproduce "$@"
