#!/bin/bash
# KgCoOp: train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/kgcoop/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-KgCoOp}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
