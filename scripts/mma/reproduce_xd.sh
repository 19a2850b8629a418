#!/bin/bash
# MMA: ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/mma/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# The official xd scripts take the config as an argument and ship no
# cross-dataset config: the ImageNet one (vit_b16_ep5_imnet) is the default.
TRAINER=${TRAINER:-MultiModalAdapter}
DEFAULT_CFG=vit_b16_ep5_imnet  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
