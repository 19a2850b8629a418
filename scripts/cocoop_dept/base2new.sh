#!/bin/bash
# CoCoOp with DePT (ExtrasLinearProbeCoCoOp): train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/cocoop_dept/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
