#!/bin/bash
# ISP: evaluate the ImageNet model on DATASET (cross-dataset, or the
# ImageNet variants imagenetv2 / imagenet_sketch / imagenet_a / imagenet_r for DG).
# Usage: bash scripts/isp/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ISP}
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
