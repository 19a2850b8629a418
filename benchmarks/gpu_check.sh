#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, unattended and in under 8 minutes,
# prints the GPU, runs the benchmarks (ViT-B/16, every trainer) in fp16, amp
# and bf16, sets ViT-B/16 evaluation images/s against the FLOP bound, trains
# one shipped config for about 300 steps on a synthetic 224 px dataset, and
# writes one Markdown report (default output/gpu_check/report.md).
#   bash benchmarks/gpu_check.sh [--out report.md] [--budget-s 450] ...
#   bash benchmarks/gpu_check.sh --help          # every option
# Without CUDA it refuses; --device cpu runs its parts on the CPU.
# PYTHON selects the interpreter (default: python).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
exec "${PYTHON:-python}" -m benchmarks.gpu_check "$@"
