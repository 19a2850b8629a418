#!/bin/bash
# MMRL: few-shot learning on DATASET (all classes): vit_b16_few_shot (50
# epochs), vit_b16_imagenet on ImageNet, as the official script.
# Usage: bash scripts/mmrl/few_shot.sh DATASET SHOTS [SEED] [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
if [ -z "$CFG" ]; then
    case "${1:-}" in
        imagenet) CFG=vit_b16_imagenet ;;
        *) CFG=vit_b16_few_shot ;;
    esac
fi
mmrl_script_opts FS "${1:-}"
few_shot "$@"
