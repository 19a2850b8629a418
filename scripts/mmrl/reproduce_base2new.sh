#!/bin/bash
# MMRL: base-to-novel runs on the 11 datasets x seeds 1-3, then the table
# (vit_b16_imagenet on ImageNet, as the official scripts; CFG overrides it).
# Usage: bash scripts/mmrl/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
DEFAULT_CFG=vit_b16
SHOTS=${SHOTS:-16}
MMRL_TASK=B2N
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
if [ -z "$CFG" ]; then
    # the official config per dataset: each dataset in a loop of its own
    DATASETS=${DATASETS:-$BASE2NEW_DATASETS}
    status=0
    for dataset in $DATASETS; do
        case "$dataset" in
            imagenet) cfg=vit_b16_imagenet ;;
            *) cfg=vit_b16 ;;
        esac
        (CFG=$cfg DATASETS=$dataset b2n_reproduce "$@") || status=1
    done
    exit $status
fi
b2n_reproduce "$@"
