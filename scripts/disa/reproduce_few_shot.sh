#!/bin/bash
# DiSa: few-shot runs on the 11 datasets x SHOTS_LIST x seeds 1-3, then the table.
# Usage: bash scripts/disa/reproduce_few_shot.sh [KEY VALUE ...]
# Environment overrides: see scripts/common.sh; SHOTS_LIST [1 2 4 8 16].
# Each dataset goes through scripts/disa/few_shot.sh (and its GPA choice).
TRAINER=${TRAINER:-DiSa}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../common.sh"
FAILED=()
for dataset in ${DATASETS:-$BASE2NEW_DATASETS}; do
    for shots in ${SHOTS_LIST:-1 2 4 8 16}; do
        run_job bash "$HERE/few_shot.sh" "$dataset" "$shots" "${SEEDS:-1 2 3}" "$@"
    done
done
"$PYTHON" scripts/results.py "$OUTPUT" --setting few-shot --trainer "$TRAINER"
report_failed
