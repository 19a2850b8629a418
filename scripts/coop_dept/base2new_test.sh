#!/bin/bash
# CoOp with DePT (ExtrasLinearProbeCoOp): evaluate the base-class model on the new classes of DATASET
# (similarity logits only: DePT's rule for new classes).
# Usage: bash scripts/coop_dept/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoOp}
DEFAULT_CFG=vit_b16_ep10_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
