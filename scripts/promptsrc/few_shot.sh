#!/bin/bash
# PromptSRC: few-shot learning on DATASET (all classes, 50 epochs).
# Usage: bash scripts/promptsrc/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Without SEED, seeds 1 2 3. With the default config, the fine-grained and
# texture/satellite datasets get the paper's GPA mean 45 / std 5 (the config
# file holds 30 / 30 for the others).
TRAINER=${TRAINER:-PromptSRC}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
if [ -z "$CFG" ]; then
    CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
    gpa_few_shot_opts TRAINER.PROMPTSRC "$1"
fi
few_shot "$@"
