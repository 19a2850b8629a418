#!/bin/bash
# PromptSRC with DePT (ExtrasLinearProbePromptSRC): evaluate the base-class model on the new classes of DATASET
# (similarity logits only: DePT's rule for new classes).
# Usage: bash scripts/promptsrc_dept/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# (DePT on PromptSRC has no official config: PromptSRC's recipe with DePT's
# defaults, see configs/trainers/ExtrasLinearProbePromptSRC/.)
TRAINER=${TRAINER:-ExtrasLinearProbePromptSRC}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
b2n_test "$@"
