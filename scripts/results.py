"""Collect CoOp-family results from the ``log.txt`` files of an output tree.

Usage::

    python scripts/results.py output/base2new [--trainer NAME] [--cfg CFG]
        [--format table|markdown|csv] [--published] [--plot out.png]
        [--compare | --per-trainer]

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
  dumps tell (``run_settings.py``: preset, BMA beta or WiSE-FT alpha).

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
keeps one table per group. CSV output is the same flat table either way.
``--plot`` draws the HM per dataset and method (accuracy without base-to-novel
runs) as bars labelled with their values, the y axis zoomed to them, the
legend right of the axes.

Means and standard deviations are over seeds; the standard deviation is the
population one, as CoOp's ``parse_test_res.py`` computes it. HM = 2BN/(B+N) is
computed from the mean Base and Novel accuracies; the dataset average averages
the per-dataset means and takes the HM of those averages.
"""
import argparse
import csv
import io
import math
import os
import re
import sys
from collections import OrderedDict, defaultdict, namedtuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from published_results import (PUBLISHED_BASE2NEW, PUBLISHED_BASE2NEW_PER_DATASET,  # noqa: E402
                               PUBLISHED_DG, PublishedResult, published_for_dataset)
from run_settings import describe_run  # noqa: E402

# The 11 base-to-novel datasets (config names) in the papers' order, then the
# ImageNet variants of the domain-generalization setting.
BASE2NEW_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars",
                     "oxford_flowers", "food101", "fgvc_aircraft", "sun397", "dtd",
                     "eurosat", "ucf101"]
IMAGENET_VARIANTS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
XD_SOURCE = "imagenet"

SETTINGS = ("base2new", "cross-dataset", "few-shot", "dg")
BASE2NEW_PHASES = ("train_base", "test_base", "test_new")

ACCURACY_RE = re.compile(r"^\* accuracy: ([0-9]+(?:\.[0-9]+)?)%\s*$")
LOG_NAME_RE = re.compile(r"^log\.txt(-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})?$")
SEED_RE = re.compile(r"^seed(\d+)$")
SHOTS_DIR_RE = re.compile(r"^shots_(\d+)$")
CFG_SHOTS_RE = re.compile(r"^(.+)_(\d+)shots$")

# The trainer's last line of a failed run ("Error: ...") or of an interrupted
# one ("Interrupted ..."); a traceback's last line ("RuntimeError: ...").
ERROR_LINE_RE = re.compile(r"^(?:Error: |Interrupted)")
EXCEPTION_LINE_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:KeyboardInterrupt|SystemExit"
                               r"|[A-Z]\w*(?:Error|Exception))(?::\s.*)?$")
TRACEBACK_HEADER = "Traceback (most recent call last)"
LAST_LINE_WIDTH, ERROR_WIDTH = 80, 120

Run = namedtuple("Run", "setting phase dataset trainer cfg shots seed accuracy log")
Collection = namedtuple("Collection", "runs incomplete unrecognised")
FailedRun = namedtuple("FailedRun", "run_dir log status logs")  # logs: how many log files


class ResultsError(ValueError):
    """Bad input to the results tool; the message says what to fix."""


# ---------------------------------------------------------------- parsing

def parse_accuracy(log_path):
    """Return the last ``* accuracy: X%`` value of a Dassl log (in %), or None."""
    accuracy = None
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = ACCURACY_RE.match(line.strip())
            if match:
                accuracy = float(match.group(1))
    return accuracy


def log_files(run_dir, names=None):
    """The Dassl log files of ``run_dir``, oldest first."""
    if names is None:
        names = os.listdir(run_dir)
    logs = [n for n in names if LOG_NAME_RE.match(n)]
    # "log.txt" is the first log; the timestamp suffixes sort chronologically.
    logs.sort(key=lambda n: n[len("log.txt"):])
    return [os.path.join(run_dir, n) for n in logs]


def run_result(run_dir, names=None):
    """``(log_path, accuracy)`` of the newest log with a result, else ``(None, None)``."""
    for path in reversed(log_files(run_dir, names)):
        accuracy = parse_accuracy(path)
        if accuracy is not None:
            return path, accuracy
    return None, None


def _join_cfg(cfg, extra):
    """The config name with the layout's extra levels: ``cfg/level/...``."""
    return "/".join([cfg] + list(extra))


def classify_run_dir(run_dir):
    """Describe a run dir by its place in a CoOp-family layout, or return None.

    Returns a dict with ``setting``, ``phase``, ``dataset``, ``trainer``, ``cfg``,
    ``shots`` and ``seed``.
    """
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    seed_match = SEED_RE.match(parts[-1])
    if not seed_match:
        return None
    seed = int(seed_match.group(1))
    # dg/DATASET/shots_K/TRAINER/CFG/TARGET/seedS (phase = the target domain)
    if len(parts) >= 7 and parts[-7] == "dg" and SHOTS_DIR_RE.match(parts[-5]):
        setting = "dg-expert" if parts[-2].startswith("expert_") else "dg"
        return dict(setting=setting, phase=parts[-2], dataset=parts[-6],
                    shots=int(SHOTS_DIR_RE.match(parts[-5]).group(1)),
                    trainer=parts[-4], cfg=parts[-3], seed=seed)
    # {phase}/DATASET/shots_K/TRAINER/CFG/seedS
    if len(parts) >= 6 and parts[-6] in BASE2NEW_PHASES and SHOTS_DIR_RE.match(parts[-4]):
        return dict(setting="base2new", phase=parts[-6], dataset=parts[-5],
                    shots=int(SHOTS_DIR_RE.match(parts[-4]).group(1)),
                    trainer=parts[-3], cfg=parts[-2], seed=seed)
    # evaluation/TRAINER/CFG_Kshots[/...]/DATASET/seedS
    for i in range(len(parts) - 5, -1, -1):
        cfg_match = CFG_SHOTS_RE.match(parts[i + 2])
        if parts[i] == "evaluation" and cfg_match:
            return dict(setting="cross-dataset", phase="test", dataset=parts[-2],
                        trainer=parts[i + 1],
                        cfg=_join_cfg(cfg_match.group(1), parts[i + 3:-2]),
                        shots=int(cfg_match.group(2)), seed=seed)
    # DATASET/TRAINER/CFG_Kshots[/...]/seedS
    for j in range(len(parts) - 2, 1, -1):
        cfg_match = CFG_SHOTS_RE.match(parts[j])
        if cfg_match:
            return dict(setting="few-shot", phase="train", dataset=parts[j - 2],
                        trainer=parts[j - 1],
                        cfg=_join_cfg(cfg_match.group(1), parts[j + 1:-1]),
                        shots=int(cfg_match.group(2)), seed=seed)
    return None


def collect_results(root):
    """Walk ``root`` and return a ``Collection``.

    ``runs``: one ``Run`` per run dir with a result; ``incomplete``: the newest
    log of each run dir without a ``* accuracy:`` line; ``unrecognised``: logs
    with a result outside the known layouts.
    """
    if not os.path.isdir(root):
        raise ResultsError("{}: no such directory. Give the output folder of the "
                           "runs, e.g. output/base2new.".format(root))
    runs, incomplete, unrecognised = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        logs = log_files(dirpath, filenames)
        if not logs:
            continue
        log, accuracy = run_result(dirpath, filenames)
        if accuracy is None:
            incomplete.append(logs[-1])
            continue
        info = classify_run_dir(dirpath)
        if info is None:
            unrecognised.append(log)
            continue
        runs.append(Run(accuracy=accuracy, log=log, **info))
    return Collection(runs, incomplete, unrecognised)


def shorten(text, width):
    """``text`` cut to ``width`` characters, ending in "..." when it was longer."""
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def scan_log(log_path):
    """``(error_line, last_line)`` of a log: its last error line (``Error: ...``,
    ``Interrupted ...``, a traceback's exception line), or None; and its last
    non-empty line, or None for an empty log."""
    error, last, in_traceback = None, None, False
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip()
            if not line.strip():
                continue
            last = line.strip()
            if line.startswith(TRACEBACK_HEADER):
                in_traceback = True
            elif in_traceback and not line[0].isspace():
                error, in_traceback = last, False  # the exception line ends the traceback
            elif ERROR_LINE_RE.match(line) or EXCEPTION_LINE_RE.match(line):
                error = last
    return error, last


def log_status(log_path):
    """Why a log has no result: its error line, else "unfinished (last line: ...)"."""
    error, last = scan_log(log_path)
    if error is not None:
        return shorten(error, ERROR_WIDTH)
    if last is None:
        return "unfinished (empty log)"
    return "unfinished (last line: {})".format(shorten(last, LAST_LINE_WIDTH))


def failed_run_matches(info, log, filters):
    """Whether a classified run dir without a result passes the ``filter_runs``
    filters. A GuiDG expert run counts as ``dg``; an ImageNet few-shot run may
    be a cross-dataset source, so it counts as ``cross-dataset`` too."""
    settings = [info["setting"]]
    if info["setting"] == "dg-expert":
        settings.append("dg")
    if info["setting"] == "few-shot" and info["dataset"] == XD_SOURCE:
        settings.append("cross-dataset")
    return any(filter_runs([Run(accuracy=None, log=log, **dict(info, setting=setting))],
                           **filters) for setting in settings)


def failed_runs(incomplete, **filters):
    """One ``FailedRun`` per newest log of ``incomplete`` (``Collection.incomplete``),
    leaving out the run dirs in a known layout that the filters exclude."""
    failed = []
    for log in incomplete:
        run_dir = os.path.dirname(log)
        info = classify_run_dir(run_dir)
        if info is not None and not failed_run_matches(info, log, filters):
            continue
        failed.append(FailedRun(run_dir, log, log_status(log), len(log_files(run_dir))))
    return failed


def filter_runs(runs, trainers=None, cfgs=None, shots=None, datasets=None,
                seeds=None, settings=None):
    """Keep the runs that match every given filter (None: no filter).

    Trainer names match case-insensitively; a config matches its own name or a
    variant below it (``rn50`` matches ``rn50/nctx16_cscFalse_ctpend``).
    """
    def keep(run):
        if trainers and run.trainer.lower() not in {t.lower() for t in trainers}:
            return False
        if cfgs and not any(run.cfg == c or run.cfg.startswith(c + "/") for c in cfgs):
            return False
        if shots and run.shots not in shots:
            return False
        if datasets and run.dataset not in datasets:
            return False
        if seeds and run.seed not in seeds:
            return False
        if settings and run.setting not in settings:
            return False
        return True
    return [r for r in runs if keep(r)]


# ------------------------------------------------------------ statistics

def mean_std(values):
    """Mean and population standard deviation, or (None, None) when empty."""
    values = list(values)
    if not values:
        return None, None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return mean, math.sqrt(var)


def harmonic_mean(base, novel):
    """HM = 2BN/(B+N) (CoCoOp, Sec. 4.1); None when either is missing."""
    if base is None or novel is None:
        return None
    if base + novel == 0:
        return 0.0
    return 2.0 * base * novel / (base + novel)


def dataset_order(names):
    """``names`` sorted in the papers' order, unknown datasets last by name."""
    known = BASE2NEW_DATASETS + IMAGENET_VARIANTS
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def group_key(run):
    """The (trainer, cfg, shots) group of a run."""
    return (run.trainer, run.cfg, run.shots)


def group_label(key):
    """The label "TRAINER / CFG / K shots" of a group key."""
    trainer, cfg, shots = key
    return "{} / {} / {} shots".format(trainer, cfg, shots)


B2NRow = namedtuple("B2NRow", "dataset base base_std novel novel_std hm base_seeds novel_seeds")
B2NTable = namedtuple("B2NTable", "key rows average")
AccRow = namedtuple("AccRow", "dataset values")  # values: key -> (mean, std, n)
AccTable = namedtuple("AccTable", "setting keys rows averages")


def average_label(datasets):
    """The average's label: "Average (11 datasets)" or "Average (N datasets)"."""
    if set(datasets) == set(BASE2NEW_DATASETS):
        return "Average (11 datasets)"
    return "Average ({} dataset{})".format(len(datasets), "" if len(datasets) == 1 else "s")


def summarize_base2new(runs):
    """One ``B2NTable`` per (trainer, cfg, shots) of the base-to-novel runs."""
    accs = defaultdict(lambda: defaultdict(lambda: {"base": {}, "new": {}}))
    # test_base (an explicit evaluation on base classes) wins over the test at
    # the end of training, whatever the walk order.
    for run in sorted(runs, key=lambda r: r.phase != "train_base"):
        if run.setting != "base2new":
            continue
        split = "new" if run.phase == "test_new" else "base"
        accs[group_key(run)][run.dataset][split][run.seed] = run.accuracy
    tables = []
    for key in sorted(accs):
        rows = []
        for dataset in dataset_order(accs[key]):
            base = accs[key][dataset]["base"]
            new = accs[key][dataset]["new"]
            b, b_std = mean_std(base.values())
            n, n_std = mean_std(new.values())
            rows.append(B2NRow(dataset, b, b_std, n, n_std, harmonic_mean(b, n),
                               sorted(base), sorted(new)))
        complete = [r for r in rows if r.base is not None and r.novel is not None]
        average = None
        if complete:
            b = sum(r.base for r in complete) / len(complete)
            n = sum(r.novel for r in complete) / len(complete)
            average = B2NRow(average_label([r.dataset for r in complete]), b, None, n,
                             None, harmonic_mean(b, n), None, None)
        tables.append(B2NTable(key, rows, average))
    return tables


B2NBlock = namedtuple("B2NBlock", "title rows published")
# rows: [(group label, B2NRow)]; published: [(method, PublishedResult)]


def _mean(values):
    """The mean of a non-empty iterable."""
    values = list(values)
    return sum(values) / len(values)


def published_averages(datasets):
    """``[(method, PublishedResult)]`` averaged over ``datasets``: the papers'
    11-dataset averages for the 11 datasets; else, for each method whose
    published per-dataset numbers cover them all, the means of Base and Novel
    and the HM of those means (as for our runs)."""
    if set(datasets) == set(BASE2NEW_DATASETS):
        return list(PUBLISHED_BASE2NEW.items())
    out = []
    for name, per in PUBLISHED_BASE2NEW_PER_DATASET.items():
        if datasets and all(d in per for d in datasets):
            base = _mean(per[d].base for d in datasets)
            novel = _mean(per[d].novel for d in datasets)
            sources = list(OrderedDict.fromkeys(per[d].source for d in datasets))
            out.append((name, PublishedResult(base, novel, harmonic_mean(base, novel),
                                              "; ".join(sources))))
    return out


def compare_average(tables):
    """The ``B2NBlock`` of each group's averages over the datasets that every
    group has Base and Novel of, with the published averages over the same
    datasets; None when fewer than two datasets are common to all groups (the
    dataset's own block already says it all)."""
    complete = [{r.dataset: r for r in t.rows if r.base is not None and r.novel is not None}
                for t in tables]
    common = dataset_order(set.intersection(*[set(c) for c in complete]))
    if len(common) < 2:
        return None
    label = average_label(common)
    rows = []
    for table, rows_by_dataset in zip(tables, complete):
        base = _mean(rows_by_dataset[d].base for d in common)
        novel = _mean(rows_by_dataset[d].novel for d in common)
        rows.append((group_label(table.key), B2NRow(label, base, None, novel, None,
                                                    harmonic_mean(base, novel), None, None)))
    title = label if set(common) == set(BASE2NEW_DATASETS) else "{}: {})".format(
        label[:-1], ", ".join(common))
    return B2NBlock(title, rows, published_averages(common))


def compare_base2new(tables):
    """The ``B2NTable`` s regrouped for the comparison: one ``B2NBlock`` per
    dataset (a row per group that ran it, then that dataset's published
    numbers), then the ``compare_average`` block."""
    blocks = []
    for dataset in dataset_order({r.dataset for t in tables for r in t.rows}):
        rows = [(group_label(t.key), r) for t in tables for r in t.rows if r.dataset == dataset]
        blocks.append(B2NBlock(dataset, rows, list(published_for_dataset(dataset).items())))
    average = compare_average(tables)
    return blocks + ([average] if average is not None else [])


def summarize_accuracy(runs, setting):
    """A per-dataset accuracy table of one setting, one column per group.

    The ImageNet runs in the few-shot layout with the trainer / config / shots
    of a cross-dataset group are that group's source: they make the source row
    of the cross-dataset table, not a few-shot row. The cross-dataset averages
    are over the targets: the other datasets and the ImageNet variants apart.
    """
    xd_keys = {group_key(r) for r in runs if r.setting == "cross-dataset"}
    accs = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        is_xd_source = run.dataset == XD_SOURCE and group_key(run) in xd_keys
        if run.setting == setting and not (setting == "few-shot" and is_xd_source):
            accs[run.dataset][group_key(run)][run.seed] = run.accuracy
    keys = sorted({k for per_key in accs.values() for k in per_key})
    if not keys:
        return None
    if setting == "cross-dataset":
        for run in runs:
            if (run.setting == "few-shot" and run.dataset == XD_SOURCE
                    and group_key(run) in keys):
                accs[XD_SOURCE][group_key(run)][run.seed] = run.accuracy
    rows = []
    for dataset in dataset_order(accs):
        values = OrderedDict()
        for key in keys:
            seeds = accs[dataset].get(key, {})
            mean, std = mean_std(seeds.values())
            values[key] = (mean, std, len(seeds))
        label = dataset + " (source)" if setting == "cross-dataset" and dataset == XD_SOURCE else dataset
        rows.append(AccRow(label, values))

    if setting == "cross-dataset":
        parts = [("cross-dataset target", [d for d in accs if d != XD_SOURCE
                                          and d not in IMAGENET_VARIANTS]),
                 ("ImageNet variant", [d for d in accs if d in IMAGENET_VARIANTS])]
    else:
        parts = [("dataset", list(accs))]
    averages = []
    for noun, datasets in parts:
        if not datasets:
            continue
        values = OrderedDict()
        for key in keys:
            means = [mean_std(accs[d][key].values())[0] for d in datasets if accs[d].get(key)]
            values[key] = (sum(means) / len(means) if means else None, None, len(means))
        averages.append(AccRow("Average ({} {}{})".format(
            len(datasets), noun, "" if len(datasets) == 1 else "s"), values))
    return AccTable(setting, keys, rows, averages)


# rows: (label, [(mean, std, n)]); settings: one "preset P, averaging" text a row
DGTable = namedtuple("DGTable", "dataset domains rows settings")


def summarize_dg(runs):
    """One ``DGTable`` per DG dataset: a row per (trainer, cfg, shots), a column
    per target domain (published order when known) and the average of the
    targets' means (only when every column has a result); with each row, what
    made its runs (``run_settings.describe_run``: the preset, the averaging)."""
    accs = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    made_by = defaultdict(lambda: defaultdict(set))
    for run in runs:
        if run.setting == "dg":
            accs[run.dataset][group_key(run)][run.phase][run.seed] = run.accuracy
            made_by[run.dataset][group_key(run)].add(describe_run(run.log) or "no config in log")
    tables = []
    for dataset in sorted(accs):
        seen = sorted({t for per_key in accs[dataset].values() for t in per_key})
        known = PUBLISHED_DG[dataset].domains if dataset in PUBLISHED_DG else []
        domains = [d for d in known if d in seen] + [d for d in seen if d not in known]
        rows, settings = [], []
        for key in sorted(accs[dataset]):
            cells = [mean_std(accs[dataset][key][d].values()) + (len(accs[dataset][key][d]),)
                     for d in domains]
            means = [c[0] for c in cells]
            average = sum(means) / len(means) if None not in means else None
            rows.append((group_label(key), cells + [(average, None, 0)]))
            settings.append(" | ".join(sorted(made_by[dataset][key])))
        tables.append(DGTable(dataset, domains, rows, settings))
    return tables


def published_dg_rows(table):
    """Published rows of ``table.dataset`` on its domains (None when unknown)."""
    pub = PUBLISHED_DG.get(table.dataset)
    if pub is None:
        return []
    out = []
    for name, values in pub.rows.items():
        cells = [values[pub.domains.index(d)] if d in pub.domains else None
                 for d in table.domains]
        average = values[-1] if set(table.domains) == set(pub.domains) else None
        out.append(("{} (published)".format(name), cells + [average]))
    return out


def dg_title(table):
    """The title of a ``DGTable``: the dataset and the presets of its rows."""
    presets = sorted({m.group(1) for text in table.settings
                      for m in re.finditer(r"preset (\w+)", text)})
    return "Domain generalization: {} (accuracy % on each target domain{})".format(
        table.dataset, "; preset " + ", ".join(presets) if presets else "")


def dg_notes(table):
    """One line a row: what made its runs."""
    return ["{}: {}".format(label, text) for (label, _), text in zip(table.rows, table.settings)]


def dg_headers(table):
    """Column headers of a ``DGTable``: the published short domain names where known."""
    pub = PUBLISHED_DG.get(table.dataset)
    names = [pub.labels[pub.domains.index(d)] if pub and d in pub.domains else d
             for d in table.domains]
    return ["Method"] + names + ["Avg."]


# ------------------------------------------------------------- formatting

def fmt(value, std=None):
    """A cell: "12.34", "12.34 ± 0.56", or "-" for a missing value."""
    if value is None:
        return "-"
    if std is None:
        return "{:.2f}".format(value)
    return "{:.2f} ± {:.2f}".format(value, std)


def fmt_seeds(base_seeds, novel_seeds):
    """The seeds cell: "1,2,3", or "B:1,2 N:1" when Base and Novel differ."""
    if base_seeds is None:
        return ""
    if base_seeds == novel_seeds:
        return ",".join(map(str, base_seeds))
    return "B:{} N:{}".format(",".join(map(str, base_seeds)) or "-",
                             ",".join(map(str, novel_seeds)) or "-")


def published_rows(tables):
    """Rows of the comparison with the published 11-dataset averages."""
    rows = [[name, fmt(p.base), fmt(p.novel), fmt(p.hm), p.source]
            for name, p in PUBLISHED_BASE2NEW.items()]
    for table in tables:
        if table.average is not None:
            a = table.average
            rows.append(["ours: " + group_label(table.key), fmt(a.base), fmt(a.novel),
                         fmt(a.hm), "our runs, " + a.dataset])
    return rows


def b2n_cells(row):
    """Base, Novel (mean ± std), HM and seeds cells of a ``B2NRow``."""
    return [fmt(row.base, row.base_std), fmt(row.novel, row.novel_std), fmt(row.hm),
            fmt_seeds(row.base_seeds, row.novel_seeds)]


COMPARE_HEADERS = ["Method", "Base", "Novel", "HM", "Seeds"]


def compare_rows(block):
    """``(headers, rows)`` of a ``B2NBlock``: ours, then the published ones;
    without the Seeds column when no row has seeds (the averages)."""
    rows = [[label] + b2n_cells(row) for label, row in block.rows]
    rows += [["{} (published)".format(name), fmt(p.base), fmt(p.novel), fmt(p.hm), ""]
             for name, p in block.published]
    if any(row[-1] for row in rows):
        return COMPARE_HEADERS, rows
    return COMPARE_HEADERS[:-1], [row[:-1] for row in rows]


def sources_notes(published):
    """One "(published) A, B: source" line per source of ``[(method, PublishedResult)]``."""
    by_source = OrderedDict()
    for name, p in published:
        by_source.setdefault(p.source, []).append(name)
    return ["(published) {}: {}".format(", ".join(names), source)
            for source, names in by_source.items()]


def add_section(out, fmt_name, title, headers, rows, notes=()):
    """Append a titled table (``simple``, or ``github`` for markdown) and its
    note lines to the list of report lines ``out``."""
    from tabulate import tabulate

    markdown = fmt_name == "markdown"
    out.append(("### " if markdown else "") + title)
    out.append("")
    out.append(tabulate(rows, headers=headers, tablefmt="github" if markdown else "simple",
                        disable_numparse=True))
    out.append("")
    if notes:
        out.extend(("- " if markdown else "") + note for note in notes)
        out.append("")


def render_tables(tables, acc_tables, published, fmt_name, dg_tables=(), compare=False):
    """The text of the table or markdown report; ``compare``: the base-to-novel
    results as one table per dataset with the groups side by side."""
    out = []

    def section(title, headers, rows, notes=()):
        add_section(out, fmt_name, title, headers, rows, notes)

    eleven_shown = False
    if compare and tables:
        for block in compare_base2new(tables):
            headers, rows = compare_rows(block)
            section("Base-to-novel: " + block.title, headers, rows,
                    sources_notes(block.published))
            eleven_shown = eleven_shown or block.title == average_label(BASE2NEW_DATASETS)
    else:
        for table in tables:
            rows = [[r.dataset] + b2n_cells(r) for r in table.rows]
            if table.average is not None:
                a = table.average
                rows.append([a.dataset, fmt(a.base), fmt(a.novel), fmt(a.hm), ""])
            section("Base-to-novel: " + group_label(table.key),
                    ["Dataset", "Base", "Novel", "HM", "Seeds"], rows)
    # the comparison already shows the published 11-dataset averages beside ours
    if published and tables and not eleven_shown:
        section("Published 11-dataset averages (ViT-B/16, 16 shots) and ours",
                ["Method", "Base", "Novel", "HM", "Source"], published_rows(tables))
    for table in acc_tables:
        headers = ["Dataset"] + [group_label(k) for k in table.keys]
        rows = []
        for row in table.rows + table.averages:
            rows.append([row.dataset] + [fmt(m, s) for m, s, _ in row.values.values()])
        section(("Cross-dataset" if table.setting == "cross-dataset" else "Few-shot")
                + " accuracy (%)", headers, rows)
    for table in dg_tables:
        rows = [[label] + [fmt(m, s) for m, s, _ in cells] for label, cells in table.rows]
        if published:
            rows += [[label] + [fmt(v) for v in values]
                     for label, values in published_dg_rows(table)]
        section(dg_title(table), dg_headers(table), rows, dg_notes(table))
    return "\n".join(out).rstrip() + "\n"


CSV_COLUMNS = ["setting", "trainer", "cfg", "shots", "dataset", "seeds", "base", "base_std",
               "novel", "novel_std", "hm", "accuracy", "accuracy_std", "settings"]


def _num(value):
    """A CSV number with 2 decimals, "" when missing."""
    return "" if value is None else "{:.2f}".format(value)


def render_csv(tables, acc_tables, published, dg_tables=()):
    """One flat CSV of every row (averages have ``dataset`` = their label); a
    domain-generalization row's ``settings`` says what made its runs (the
    preset and the averaging, as under the printed table)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        trainer, cfg, shots = table.key
        rows = table.rows + ([table.average] if table.average else [])
        for r in rows:
            writer.writerow(dict(
                setting="base2new", trainer=trainer, cfg=cfg, shots=shots, dataset=r.dataset,
                seeds=" ".join(map(str, sorted(set(r.base_seeds or []) | set(r.novel_seeds or [])))),
                base=_num(r.base), base_std=_num(r.base_std), novel=_num(r.novel),
                novel_std=_num(r.novel_std), hm=_num(r.hm)))
    if published and tables:
        for name, p in PUBLISHED_BASE2NEW.items():
            writer.writerow(dict(setting="published", trainer=name, dataset="Average (11 datasets)",
                                 base=_num(p.base), novel=_num(p.novel), hm=_num(p.hm)))
        for name, per in PUBLISHED_BASE2NEW_PER_DATASET.items():
            for dataset, p in per.items():
                writer.writerow(dict(setting="published", trainer=name, dataset=dataset,
                                     base=_num(p.base), novel=_num(p.novel), hm=_num(p.hm)))
    for table in acc_tables:
        for row in table.rows + table.averages:
            for (trainer, cfg, shots), (mean, std, n) in row.values.items():
                if mean is None:
                    continue
                writer.writerow(dict(setting=table.setting, trainer=trainer, cfg=cfg,
                                     shots=shots, dataset=row.dataset,
                                     seeds=n if row in table.rows else "",
                                     accuracy=_num(mean), accuracy_std=_num(std)))
    for table in dg_tables:
        for (label, cells), settings in zip(table.rows, table.settings):
            trainer, cfg, shots = [p.strip() for p in label.split(" / ")]
            for domain, (mean, std, n) in zip(table.domains + ["Avg."], cells):
                if mean is not None:
                    writer.writerow(dict(setting="dg", trainer=trainer, cfg=cfg,
                                         shots=shots.split()[0],
                                         dataset="{}:{}".format(table.dataset, domain),
                                         seeds=n or "", accuracy=_num(mean),
                                         accuracy_std=_num(std), settings=settings))
    return buf.getvalue()


FAILED_TITLE = "Unfinished or failed runs (not counted)"


def render_failed(failed, fmt_name="table"):
    """The list of ``FailedRun`` s under its title, one line each ("" when none)."""
    if not failed:
        return ""
    lines = []
    for run in failed:
        where = run.run_dir
        if run.logs > 1:
            where += " ({} logs, newest {})".format(run.logs, os.path.basename(run.log))
        lines.append((where, run.status))
    if fmt_name == "markdown":
        return "### {}\n\n{}".format(FAILED_TITLE, "".join(
            "- `{}`: `{}`\n".format(where, status.replace("`", "'")) for where, status in lines))
    return "{}:\n{}".format(FAILED_TITLE, "".join(
        "  {}: {}\n".format(where, status) for where, status in lines))


# ------------------------------------------------------------------ plot

PLOT_DPI = 120
PUBLISHED_SUFFIX = " (published)"


def plot_series(tables, acc_tables, published):
    """``(ylabel, title, categories, series)`` of the bar chart, ``series`` an
    OrderedDict label -> {category: value}.

    Base-to-novel: the HM per dataset and each group's average (category =
    its label, e.g. "Average (3 datasets)"); with ``published`` also the
    published HMs: per dataset where known, and the 11-dataset averages in the
    "Average (11 datasets)" category. Without base-to-novel runs: the accuracy
    of each setting's groups per dataset and average.
    """
    series, categories = OrderedDict(), []
    if tables:
        averages = []
        for table in tables:
            values = OrderedDict((r.dataset, r.hm) for r in table.rows if r.hm is not None)
            if table.average is not None:
                values[table.average.dataset] = table.average.hm
                averages.append(table.average.dataset)
            series[group_label(table.key)] = values
        categories = dataset_order({r.dataset for t in tables for r in t.rows if r.hm is not None})
        if published:
            eleven = average_label(BASE2NEW_DATASETS)
            averages.append(eleven)
            for name in OrderedDict.fromkeys(list(PUBLISHED_BASE2NEW)
                                             + list(PUBLISHED_BASE2NEW_PER_DATASET)):
                per = PUBLISHED_BASE2NEW_PER_DATASET.get(name, {})
                values = OrderedDict((d, per[d].hm) for d in categories if d in per)
                if name in PUBLISHED_BASE2NEW:
                    values[eleven] = PUBLISHED_BASE2NEW[name].hm
                series[name + PUBLISHED_SUFFIX] = values
        categories += list(OrderedDict.fromkeys(averages))
        return "HM (%)", "Base-to-novel harmonic mean", categories, series
    for table in acc_tables:
        for row in table.rows + table.averages:
            if row.dataset not in categories:
                categories.append(row.dataset)
            for key, (mean, _, _) in row.values.items():
                if mean is not None:
                    series.setdefault("{}: {}".format(table.setting, group_label(key)),
                                      {})[row.dataset] = mean
    return "Accuracy (%)", "Accuracy", categories, series


def y_range(values, label_fraction):
    """``(bottom, top)`` of the zoomed y axis: bottom floor((min - 5) / 5) * 5,
    at least 0; top leaves ``label_fraction`` of the axis above the largest
    value for the bar labels."""
    bottom = max(0.0, math.floor((min(values) - 5.0) / 5.0) * 5.0)
    top = (max(values) - label_fraction * bottom) / (1.0 - label_fraction)
    return bottom, max(top, max(values) + 1.0)


def draw_bars(ax, categories, members, series, category_in):
    """Draw and label the bars of ``series`` on ``ax``: in category ``c`` the
    bars of ``members[c]`` share 0.8 of its width, centred on its tick, each
    with its value on top ("%.1f", turned 90 degrees where the bars are too
    narrow for it); published series are hatched. ``category_in``: a
    category's width in inches, about. Returns ``(values, rotated)``."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    names = list(series)
    values, rotated, in_legend = [], False, set()
    for c, category in enumerate(categories):
        n = len(members[category])
        width = 0.8 / n
        # labels of 4-5 digits in 7 pt fit across a bar of 0.3 in, else turn them
        rotate = width * category_in < 0.3
        rotated = rotated or rotate
        for k, label in enumerate(members[category]):
            value = series[label][category]
            bars = ax.bar([c + (k - (n - 1) / 2.0) * width], [value], width=width,
                          color=cmap(names.index(label) % cmap.N),
                          label=label if label not in in_legend else "_nolegend_",
                          hatch="///" if label.endswith(PUBLISHED_SUFFIX) else None,
                          edgecolor="white", linewidth=0.5)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2, rotation=90 if rotate else 0)
            in_legend.add(label)
            values.append(value)
    return values, rotated


def place_legend(ax, names):
    """The legend of ``ax`` in the order of ``names``, outside the axes on
    their right (``savefig(..., bbox_inches="tight")`` keeps it)."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda j: names.index(labels[j]))
    ax.legend([handles[j] for j in order], [labels[j] for j in order], fontsize="small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)


def build_plot(tables, acc_tables, published):
    """The bar chart of ``plot_series`` as ``(fig, ax)``: bars by ``draw_bars``,
    the y axis zoomed to the values (``y_range``), the legend outside the axes
    on their right, clear of the bars (``place_legend``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ylabel, title, categories, series = plot_series(tables, acc_tables, published)
    members = OrderedDict((c, [label for label, values in series.items()
                               if values.get(c) is not None]) for c in categories)
    members = OrderedDict((c, m) for c, m in members.items() if m)
    if not members:
        raise ResultsError("nothing to plot: no finished run matched")
    categories = list(members)
    slots = max(len(m) for m in members.values())
    plot_w = min(30.0, max(5.0, len(categories) * max(0.9, 0.18 * slots) + 1.0))
    legend_w = 0.4 + 0.075 * max(len(label) for label in series)
    fig, ax = plt.subplots(figsize=(plot_w + legend_w, 4.5), dpi=PLOT_DPI)
    values, rotated = draw_bars(ax, categories, members, series,
                                (plot_w - 1.0) / len(categories))
    ax.set_ylim(*y_range(values, 0.12 if rotated else 0.07))
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    place_legend(ax, list(series))
    fig.tight_layout()
    return fig, ax


def plot_results(path, tables, acc_tables, published):
    """Write the ``build_plot`` bar chart to the PNG ``path``: HM per dataset
    and method, or the accuracy without base-to-novel runs."""
    import matplotlib.pyplot as plt

    fig, _ = build_plot(tables, acc_tables, published)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=PLOT_DPI, bbox_inches="tight")  # "tight" keeps the outside legend
    plt.close(fig)


# -------------------------------------------------------------------- CLI

def build_parser():
    """The command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder to walk, e.g. output/base2new")
    parser.add_argument("--trainer", nargs="+", help="keep these trainers (e.g. PromptSRC)")
    parser.add_argument("--cfg", nargs="+", help="keep these config names")
    parser.add_argument("--shots", nargs="+", type=int, help="keep these numbers of shots")
    parser.add_argument("--dataset", nargs="+", help="keep these datasets (config names)")
    parser.add_argument("--seed", nargs="+", type=int, help="keep these seeds")
    parser.add_argument("--setting", nargs="+", choices=SETTINGS, help="keep these settings")
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    parser.add_argument("--published", action="store_true",
                        help="add the published 11-dataset base-to-novel averages (to the "
                             "plot, and as a table of their own unless the comparison's "
                             "11-dataset average already shows them)")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart to this file")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--compare", dest="compare", action="store_true",
                      help="base-to-novel: one table per dataset with the methods side by side "
                           "and the published numbers (the default with several trainer / "
                           "config / shots groups)")
    view.add_argument("--per-trainer", "--no-compare", dest="compare", action="store_false",
                      help="base-to-novel: one table per trainer / config / shots group")
    parser.set_defaults(compare=None)
    return parser


def warn(message):
    """Print a warning on stderr."""
    print("warning: " + message, file=sys.stderr)


def report(args):
    """Collect, filter and print; return the process exit status."""
    collection = collect_results(args.root)
    for log in collection.unrecognised:
        warn("{}: not in a CoOp-family layout (.../seed<N>/log.txt); not counted".format(log))
    filters = dict(trainers=args.trainer, cfgs=args.cfg, shots=args.shots,
                   datasets=args.dataset, seeds=args.seed, settings=args.setting)
    runs = filter_runs(collection.runs, **filters)
    failed = failed_runs(collection.incomplete, **filters)
    if not runs:
        print("error: no finished run (a log.txt with '* accuracy:') under {}{}".format(
            args.root, " matches the filters" if collection.runs else ""), file=sys.stderr)
        sys.stderr.write(render_failed(failed))
        return 1
    tables = summarize_base2new(runs)
    for table in tables:
        for row in table.rows:
            if row.base_seeds != row.novel_seeds:
                warn("{} {}: Base seeds {} but Novel seeds {}".format(
                    group_label(table.key), row.dataset, row.base_seeds or "none",
                    row.novel_seeds or "none"))
    acc_tables = [t for t in (summarize_accuracy(runs, "cross-dataset"),
                              summarize_accuracy(runs, "few-shot")) if t is not None]
    dg_tables = summarize_dg(runs)
    compare = len(tables) > 1 if args.compare is None else args.compare
    if args.format == "csv":
        sys.stdout.write(render_csv(tables, acc_tables, args.published, dg_tables))
        sys.stdout.flush()
        sys.stderr.write(render_failed(failed))  # the CSV stays one flat table
    else:
        text = render_tables(tables, acc_tables, args.published, args.format, dg_tables,
                             compare)
        failed_text = render_failed(failed, args.format)
        sys.stdout.write(text + ("\n" + failed_text if failed_text else ""))
    if args.plot:
        plot_results(args.plot, tables, acc_tables, args.published)
        print("Saved the plot to {}".format(args.plot), file=sys.stderr)
    return 0


def main(argv=None):
    """Run the tool; return the exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return report(args)
    except ResultsError as err:
        print("error: {}".format(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
