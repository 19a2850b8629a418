#!/bin/bash
# CoOp with DePT (ExtrasLinearProbeCoOp): train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/coop_dept/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ExtrasLinearProbeCoOp}
DEFAULT_CFG=vit_b16_ep10_bs4_lr35  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
