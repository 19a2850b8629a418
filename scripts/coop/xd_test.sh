#!/bin/bash
# CoOp: evaluate the ImageNet model on DATASET (cross-dataset / domain shift).
# Usage: bash scripts/coop/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-CoOp}
DEFAULT_CFG=vit_b16_ep50_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
