#!/bin/bash
# MMRL: base-to-novel runs on the 11 datasets x seeds 1-3, then the tables
# (vit_b16, and vit_b16_imagenet on ImageNet, as the official scripts; CFG
# gives every dataset one config instead).
# Usage: bash scripts/mmrl/reproduce_base2new.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; the official per-dataset
# values and TASK: official_values.sh.
TRAINER=${TRAINER:-MMRL}
DEFAULT_CFG=vit_b16
SHOTS=${SHOTS:-16}
MMRL_TASK=B2N
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/official_values.sh"
if [ -n "$CFG" ]; then
    b2n_reproduce "$@"
    exit
fi
FAILED=()
for dataset in ${DATASETS:-$BASE2NEW_DATASETS}; do
    case "$dataset" in
        imagenet) cfg=vit_b16_imagenet ;;
        *) cfg=vit_b16 ;;
    esac
    for seed in ${SEEDS:-1 2 3}; do
        CFG=$cfg run_job b2n_train "$dataset" "$seed" "$@" &&
            CFG=$cfg run_job b2n_test "$dataset" "$seed" "$@"
    done
done
for cfg in vit_b16 vit_b16_imagenet; do
    (CFG=$cfg; resolve_config; set_variant "$@"
     results_table "$OUTPUT/base2new" --setting base2new)
done
report_failed
