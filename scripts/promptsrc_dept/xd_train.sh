#!/bin/bash
# PromptSRC with DePT (ExtrasLinearProbePromptSRC): train on ImageNet, all classes, 16 shots (cross-dataset source; the
# probe trains on ImageNet's classes).
# Usage: bash scripts/promptsrc_dept/xd_train.sh SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh.
# (DePT on PromptSRC has no official config: PromptSRC's recipe with DePT's
# defaults, see configs/trainers/ExtrasLinearProbePromptSRC/.)
TRAINER=${TRAINER:-ExtrasLinearProbePromptSRC}
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
