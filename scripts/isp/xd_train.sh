#!/bin/bash
# ISP: train on ImageNet, all classes, 16 shots (cross-dataset / DG source).
# Usage: bash scripts/isp/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ISP}
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
