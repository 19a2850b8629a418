#!/bin/bash
# CoOp with DePT (ExtrasLinearProbeCoOp): evaluate the ImageNet model on DATASET (ImageNet variants: fused
# with the probe, ImageNet-A / -R on their 200 classes' rows; other datasets:
# similarity logits only).
# Usage: bash scripts/coop_dept/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoOp}
DEFAULT_CFG=vit_b16_ep10_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
