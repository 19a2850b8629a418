#!/bin/bash
# MMA: train on ImageNet, all classes, 16 shots (cross-dataset source).
# Usage: bash scripts/mma/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# The official xd scripts take the config as an argument and ship no
# cross-dataset config: the ImageNet one (vit_b16_ep5_imnet) is the default.
TRAINER=${TRAINER:-MultiModalAdapter}
DEFAULT_CFG=vit_b16_ep5_imnet  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
