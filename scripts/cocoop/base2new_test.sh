#!/bin/bash
# CoCoOp: evaluate the base-class model on the new classes of DATASET.
# Usage: bash scripts/cocoop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-CoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
