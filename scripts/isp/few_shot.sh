#!/bin/bash
# ISP: few-shot learning on DATASET (all classes, 50 epochs).
# Usage: bash scripts/isp/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Without SEED, seeds 1 2 3.
# Environment overrides: see scripts/common.sh.
TRAINER=${TRAINER:-ISP}
DEFAULT_CFG=vit_b16_c2_ep50_batch4_2+2ctx_few_shot  # CFG overrides it
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
