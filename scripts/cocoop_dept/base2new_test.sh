#!/bin/bash
# CoCoOp with DePT (ExtrasLinearProbeCoCoOp): evaluate the base-class model on the new classes of DATASET
# (similarity logits only: DePT's rule for new classes).
# Usage: bash scripts/cocoop_dept/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoCoOp}
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
