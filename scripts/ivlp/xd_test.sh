#!/bin/bash
# IVLP: evaluate the ImageNet model on DATASET (cross-dataset / domain shift).
# Usage: bash scripts/ivlp/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-IVLP}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
