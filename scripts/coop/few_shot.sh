#!/bin/bash
# CoOp: few-shot learning on DATASET (all classes), as CoOp's main.sh.
# Usage: bash scripts/coop/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Without SEED, seeds 1 2 3. Without CFG, the paper's schedule for ViT-B/16:
# 50 epochs for 1 shot and for ImageNet, 100 for 2-4 shots, 200 for 8-16.
# NCTX [16], CSC [False], CTP [end] set the context length, class-specific
# context and class-token position (run dir .../nctx16_cscFalse_ctpend/).
TRAINER=${TRAINER:-CoOp}
if [ -z "$CFG" ]; then
    case "$1:$2" in
        imagenet:* | *:1) CFG=vit_b16_ep50 ;;
        *:2 | *:4) CFG=vit_b16_ep100 ;;
        *) CFG=vit_b16 ;;
    esac
fi
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
FS_SUBDIR=nctx${NCTX}_csc${CSC}_ctp${CTP}
FS_OPTS=(TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP")
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
