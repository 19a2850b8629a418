"""Collect CoOp-family results from the ``log.txt`` files of an output tree.

Usage::

    python scripts/results.py output/base2new [--trainer NAME] [--cfg CFG]
        [--format table|markdown|csv] [--published] [--plot out.png]
        [--compare | --per-trainer]

The code is the package ``clipwb.results`` (runs, aggregate, tables, plot,
published, cli); this file is its command.

Recognised layouts (the CoOp / MaPLe / PromptSRC scripts write them):

- base-to-novel: ``{train_base,test_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS``.
  Base is the ``test_base`` run when there is one, else the test at the end of
  the ``train_base`` run; Novel is ``test_new``;
- cross-dataset: ``evaluation/TRAINER/CFG_Kshots[/...]/DATASET/seedS``, with the
  ImageNet source run ``imagenet/TRAINER/CFG_Kshots/seedS`` when present;
- few-shot: ``DATASET/TRAINER/CFG_Kshots[/...]/seedS`` (extra levels such as
  CoOp's ``nctx16_cscFalse_ctpend`` become part of the config name);
- domain generalization (GuiDG's scripts): ``dg/DATASET/shots_K/TRAINER/CFG/TARGET/seedS``,
  one column per target domain and their average; the step-1 experts
  (``.../GuiDGExpert/CFG/expert_DOMAIN[_for_TARGET]/seedS``) are not counted.
  The title names the presets of the rows (ours / official) and a line under
  the table says, for each row, what made its runs as their logs' config
  dumps tell (``clipwb/results/run_settings.py``: preset, BMA beta or WiSE-FT alpha).

A variant run (the scripts' extra ``KEY VALUE`` arguments or ``TAG``) has a
level of its own below ``CFG`` (``.../CFG/SALIENCY_text/seedS``): it is a row
of its own, its config named ``CFG/SALIENCY_text`` (``clipwb/results/variants.py``).
The toy CLIP's configs (``toy``) read "toy CLIP backbone (toy.yaml)".

A run's result is the last ``* accuracy: X%`` line of its newest log file that
has one (Dassl writes ``log.txt``, then ``log.txt-<timestamp>`` when the run
dir already had a log). A run dir none of whose logs has a result is not
counted: such runs are listed once, after the tables, under "Unfinished or
failed runs (not counted):", each with its folder and the error line of its
newest log (``Error: ...`` or ``Interrupted ...`` as the trainer writes them,
or a traceback's exception line such as ``RuntimeError: ...``), else
"unfinished (last line: ...)". The filters apply to that list too when the
folder is in a known layout. With ``--format csv`` the list goes to stderr.

Base-to-novel output: with the runs of one (trainer, cfg, shots) group, one
table per group (a row per dataset). With several groups, or ``--compare``,
one table per dataset instead, the methods side by side: a row per group
(Base / Novel / HM / seeds), then the published numbers known for that
dataset, marked "(published)". A last table compares the averages over the
datasets that every group finished, beside the published averages over the
same datasets (the papers' 11-dataset averages for the 11 datasets). Tables
per dataset read better in an 80-120 column terminal than one wide table with
a Base / Novel / HM triple per method. ``--per-trainer`` (``--no-compare``)
keeps one table per group. A group whose method has published per-dataset
numbers (``clipwb/results/published.py``; the trainer's own name, CLIP for
the zero-shot trainers) gets a table of its gaps to them, in the comparison
or with ``--published``: per dataset and split, ours (mean ± std over seeds),
published, and the difference, marked ``*`` where the standard deviation
over seeds exceeds the gap (the gap is within seed noise). CSV output is the
same flat table either way; its dataset rows carry those published numbers,
the differences (``diff_*``) and the splits within seed noise.
``--plot`` draws the HM per dataset and method (accuracy without base-to-novel
runs) as bars labelled with their values, the y axis zoomed to them, the
legend right of the axes.

Means and standard deviations are over seeds; the standard deviation is the
population one, as CoOp's ``parse_test_res.py`` computes it. HM = 2BN/(B+N) is
computed from the mean Base and Novel accuracies (its standard deviation from
each seed's own HM); the dataset average averages the per-dataset means and
takes the HM of those averages.
"""
import os
import sys

try:
    import clipwb.results  # noqa: F401
except ImportError:  # a checkout without ``pip install -e .``: the package is beside scripts/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clipwb.results import *  # noqa: F401,F403,E402  (the tool's functions, for importers)
from clipwb.results.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
