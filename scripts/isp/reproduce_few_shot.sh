#!/bin/bash
# ISP: few-shot runs (1, 2, 4, 8, 16 shots x seeds 1-3) on DATASETS, each
# dataset's table printed by scripts/results.py.
# Usage: bash scripts/isp/reproduce_few_shot.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; FS_SHOTS [1 2 4 8 16].
TRAINER=${TRAINER:-ISP}
DEFAULT_CFG=vit_b16_c2_ep50_batch4_2+2ctx_few_shot  # CFG overrides it
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
FAILED=()
for dataset in ${DATASETS:-$BASE2NEW_DATASETS}; do
    for shots in ${FS_SHOTS:-1 2 4 8 16}; do
        run_job few_shot "$dataset" "$shots" "${SEEDS:-1 2 3}" "$@"
    done
done
report_failed
