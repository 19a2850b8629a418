#!/bin/bash
# CoCoOp with DePT (ExtrasLinearProbeCoCoOp): evaluate the ImageNet model on DATASET (ImageNet variants: fused
# with the probe, ImageNet-A / -R on their 200 classes' rows; other datasets:
# similarity logits only).
# Usage: bash scripts/cocoop_dept/xd_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
