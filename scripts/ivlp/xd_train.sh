#!/bin/bash
# IVLP: train on ImageNet, all classes, 16 shots (cross-dataset source).
# Usage: bash scripts/ivlp/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-IVLP}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
