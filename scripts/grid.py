"""Run a paper grid (methods x datasets x seeds) with submitit, locally or on Slurm.

``python -m scripts.grid --methods disa isp --datasets all --seeds 1 2 3 [--dry-run]``
(or ``python scripts/grid.py ...``) from the repository root; see
``clipwb/grid/cli.py`` and the README ("A whole grid: many GPUs or Slurm").
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    from clipwb.grid.cli import run

    sys.exit(run(sys.argv[1:], repo=REPO))
