"""The grid runner: a paper grid (methods x datasets x seeds) through submitit.

``python -m scripts.grid --methods disa isp --datasets all --seeds 1 2 3``:

- :mod:`.plan` expands the grid into units, one per (method, dataset, seed):
  the train and test steps of ``scripts/<method>/base2new_*.sh``, asked for
  their run folders and state by the scripts themselves (``CLIPWB_PLAN=1``),
  so the jobs, folders and skipping rules are the scripts' own;
- :mod:`.executors` runs the units with submitit: ``local`` (one job per
  visible GPU, or N CPU jobs at a time) or ``slurm`` (one job array);
- :mod:`.cli` is the command line: dry run, report of failed jobs with their
  logs, the results table at the end.
"""
