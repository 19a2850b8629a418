#!/bin/bash
# TCP: train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/tcp/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh. ImageNet and SUN397: 25
# epochs, as the official train.py (official_epochs.sh).
TRAINER=${TRAINER:-TCP}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_epochs.sh"
b2n_all "$@"
