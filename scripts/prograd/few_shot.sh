#!/bin/bash
# ProGrad: few-shot learning on DATASET (all classes), the official recipe:
# rn50_ep50 for 1 shot and on ImageNet, rn50_ep100 for 2 and 4, rn50 (200
# epochs) for 8 and 16; N_CTX 16, generic context, class token at the end;
# LOSS.LAMBDA 1.0, except 0.8 for 8 and 16 shots on Flowers102, DTD and
# EuroSAT (the official README).
# Usage: bash scripts/prograd/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
TRAINER=${TRAINER:-ProGrad}
if [ -z "$CFG" ]; then
    case "$1:$2" in
        imagenet:* | *:1) CFG=rn50_ep50 ;;
        *:2 | *:4) CFG=rn50_ep100 ;;
        *) CFG=rn50 ;;
    esac
fi
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
if [ -z "$LAMBDA" ]; then
    case "$1:$2" in
        oxford_flowers:8 | oxford_flowers:16 | dtd:8 | dtd:16 | eurosat:8 | eurosat:16) LAMBDA=0.8 ;;
        *) LAMBDA=1.0 ;;
    esac
fi
FS_SUBDIR=nctx${NCTX}_csc${CSC}_ctp${CTP}
FS_OPTS=(TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" LOSS.LAMBDA "$LAMBDA")
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
