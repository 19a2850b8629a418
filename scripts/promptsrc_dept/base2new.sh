#!/bin/bash
# PromptSRC with DePT (ExtrasLinearProbePromptSRC): train on the base classes, test on the new ones, print Base / Novel / HM.
# Usage: bash scripts/promptsrc_dept/base2new.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# (DePT on PromptSRC has no official config: PromptSRC's recipe with DePT's
# defaults, see configs/trainers/ExtrasLinearProbePromptSRC/.)
TRAINER=${TRAINER:-ExtrasLinearProbePromptSRC}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_all "$@"
