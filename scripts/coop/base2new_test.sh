#!/bin/bash
# CoOp: evaluate the base-class model on the new classes of DATASET.
# Usage: bash scripts/coop/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-CoOp}
DEFAULT_CFG=vit_b16_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
