#!/bin/bash
# KgCoOp: train on ImageNet, all classes, 16 shots (cross-dataset source).
# Usage: bash scripts/kgcoop/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh. The official repository ships
# no cross-dataset config: its base-to-novel one (W 8.0) is the default.
TRAINER=${TRAINER:-KgCoOp}
DEFAULT_CFG=vit_b16_ep100_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
