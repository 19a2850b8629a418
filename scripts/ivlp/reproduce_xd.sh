#!/bin/bash
# IVLP: ImageNet training, then every cross-dataset target, seeds 1-3.
# Usage: bash scripts/ivlp/reproduce_xd.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-IVLP}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_reproduce "$@"
