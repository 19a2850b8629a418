#!/bin/bash
# ISP: ImageNet training, then every cross-dataset and DG target, seeds 1-3.
# Usage: bash scripts/isp/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ISP}
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx_cross_datasets  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
