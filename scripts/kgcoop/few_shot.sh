#!/bin/bash
# KgCoOp: few-shot learning on DATASET (all classes), as the official
# scripts/xd_train.sh runs it (4 shots there, config vit_b16_ep100_ctxv1, W 8.0).
# Usage: bash scripts/kgcoop/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Without SEED, seeds 1 2 3. NCTX [4], CSC [False], CTP [end] set the context
# length, class-specific context and class-token position (run dir
# .../nctx4_cscFalse_ctpend/).
TRAINER=${TRAINER:-KgCoOp}
CFG=${CFG:-vit_b16_ep100_ctxv1}
NCTX=${NCTX:-4}
CSC=${CSC:-False}
CTP=${CTP:-end}
FS_SUBDIR=nctx${NCTX}_csc${CSC}_ctp${CTP}
FS_OPTS=(TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP")
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
