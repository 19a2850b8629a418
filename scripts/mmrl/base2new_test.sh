#!/bin/bash
# MMRL: evaluate the base-class model on the new classes of DATASET.
# Usage: bash scripts/mmrl/base2new_test.sh DATASET SEED [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
if [ -z "$DEFAULT_CFG" ]; then  # the official scripts: vit_b16_imagenet on ImageNet
    case "${1:-}" in
        imagenet) DEFAULT_CFG=vit_b16_imagenet ;;
        *) DEFAULT_CFG=vit_b16 ;;
    esac
fi
SHOTS=${SHOTS:-16}
MMRL_TASK=B2N
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
b2n_test "$@"
