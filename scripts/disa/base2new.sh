#!/bin/bash
# DiSa: train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/disa/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-DiSa}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
