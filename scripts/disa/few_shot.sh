#!/bin/bash
# DiSa: few-shot learning on DATASET (all classes, 50 epochs).
# Usage: bash scripts/disa/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Without SEED, seeds 1 2 3. With the default config, the fine-grained and
# texture/satellite datasets get PromptSRC's GPA mean 45 / std 5 (the config
# file holds 30 / 30 for the others).
TRAINER=${TRAINER:-DiSa}
FS_OPTS=()
if [ -z "$CFG" ]; then
    CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
    case "$1" in
        stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat)
            FS_OPTS=(TRAINER.DISA.GPA_MEAN 45 TRAINER.DISA.GPA_STD 5) ;;
    esac
fi
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
