"""Collect CoOp-family results from the ``log.txt`` files of an output tree.

Usage::

    python scripts/results.py output/base2new [--trainer NAME] [--cfg CFG]
        [--format table|markdown|csv] [--published] [--plot out.png]

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

A run's result is the last ``* accuracy: X%`` line of its newest log file that
has one (Dassl writes ``log.txt``, then ``log.txt-<timestamp>`` when the run
dir already had a log). Logs without a result are reported and not counted.
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
from published_results import PUBLISHED_BASE2NEW, PUBLISHED_DG  # noqa: E402

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

Run = namedtuple("Run", "setting phase dataset trainer cfg shots seed accuracy log")
Collection = namedtuple("Collection", "runs incomplete unrecognised")


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
    known = BASE2NEW_DATASETS + IMAGENET_VARIANTS
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def group_key(run):
    return (run.trainer, run.cfg, run.shots)


def group_label(key):
    trainer, cfg, shots = key
    return "{} / {} / {} shots".format(trainer, cfg, shots)


B2NRow = namedtuple("B2NRow", "dataset base base_std novel novel_std hm base_seeds novel_seeds")
B2NTable = namedtuple("B2NTable", "key rows average")
AccRow = namedtuple("AccRow", "dataset values")  # values: key -> (mean, std, n)
AccTable = namedtuple("AccTable", "setting keys rows averages")


def average_label(datasets):
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


DGTable = namedtuple("DGTable", "dataset domains rows")  # rows: (label, [(mean, std, n)])


def summarize_dg(runs):
    """One ``DGTable`` per DG dataset: a row per (trainer, cfg, shots), a column
    per target domain (published order when known) and the average of the
    targets' means (only when every column has a result)."""
    accs = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for run in runs:
        if run.setting == "dg":
            accs[run.dataset][group_key(run)][run.phase][run.seed] = run.accuracy
    tables = []
    for dataset in sorted(accs):
        seen = sorted({t for per_key in accs[dataset].values() for t in per_key})
        known = PUBLISHED_DG[dataset].domains if dataset in PUBLISHED_DG else []
        domains = [d for d in known if d in seen] + [d for d in seen if d not in known]
        rows = []
        for key in sorted(accs[dataset]):
            cells = [mean_std(accs[dataset][key][d].values()) + (len(accs[dataset][key][d]),)
                     for d in domains]
            means = [c[0] for c in cells]
            average = sum(means) / len(means) if None not in means else None
            rows.append((group_label(key), cells + [(average, None, 0)]))
        tables.append(DGTable(dataset, domains, rows))
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


def dg_headers(table):
    pub = PUBLISHED_DG.get(table.dataset)
    names = [pub.labels[pub.domains.index(d)] if pub and d in pub.domains else d
             for d in table.domains]
    return ["Method"] + names + ["Avg."]


# ------------------------------------------------------------- formatting

def fmt(value, std=None):
    if value is None:
        return "-"
    if std is None:
        return "{:.2f}".format(value)
    return "{:.2f} ± {:.2f}".format(value, std)


def fmt_seeds(base_seeds, novel_seeds):
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


def render_tables(tables, acc_tables, published, fmt_name, dg_tables=()):
    """The text of the table or markdown report."""
    from tabulate import tabulate

    tablefmt = "github" if fmt_name == "markdown" else "simple"
    out = []

    def section(title, headers, rows):
        out.append(("### " if fmt_name == "markdown" else "") + title)
        out.append("")
        out.append(tabulate(rows, headers=headers, tablefmt=tablefmt,
                            disable_numparse=True))
        out.append("")

    for table in tables:
        rows = [[r.dataset, fmt(r.base, r.base_std), fmt(r.novel, r.novel_std), fmt(r.hm),
                 fmt_seeds(r.base_seeds, r.novel_seeds)] for r in table.rows]
        if table.average is not None:
            a = table.average
            rows.append([a.dataset, fmt(a.base), fmt(a.novel), fmt(a.hm), ""])
        section("Base-to-novel: " + group_label(table.key),
                ["Dataset", "Base", "Novel", "HM", "Seeds"], rows)
    if published and tables:
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
        section("Domain generalization: {} (accuracy % on each target domain)".format(
            table.dataset), dg_headers(table), rows)
    return "\n".join(out).rstrip() + "\n"


CSV_COLUMNS = ["setting", "trainer", "cfg", "shots", "dataset", "seeds", "base", "base_std",
               "novel", "novel_std", "hm", "accuracy", "accuracy_std"]


def _num(value):
    return "" if value is None else "{:.2f}".format(value)


def render_csv(tables, acc_tables, published, dg_tables=()):
    """One flat CSV of every row (averages have ``dataset`` = their label)."""
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
        for label, cells in table.rows:
            trainer, cfg, shots = [p.strip() for p in label.split(" / ")]
            for domain, (mean, std, n) in zip(table.domains + ["Avg."], cells):
                if mean is not None:
                    writer.writerow(dict(setting="dg", trainer=trainer, cfg=cfg,
                                         shots=shots.split()[0],
                                         dataset="{}:{}".format(table.dataset, domain),
                                         seeds=n or "", accuracy=_num(mean),
                                         accuracy_std=_num(std)))
    return buf.getvalue()


def plot_results(path, tables, acc_tables, published):
    """Bar chart (PNG): HM per dataset and method, or accuracy without base2new runs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = OrderedDict()
    if tables:
        ylabel, title = "HM (%)", "Base-to-novel harmonic mean"
        categories = []
        for table in tables:
            values = {r.dataset: r.hm for r in table.rows if r.hm is not None}
            if table.average is not None:
                values["Average"] = table.average.hm
            series[group_label(table.key)] = values
            categories += [d for d in values if d not in categories and d != "Average"]
        categories.append("Average")
        if published:
            for name, p in PUBLISHED_BASE2NEW.items():
                series["{} (published)".format(name)] = {"Average": p.hm}
    else:
        ylabel, title = "Accuracy (%)", "Accuracy"
        categories = []
        for table in acc_tables:
            for row in table.rows + table.averages:
                if row.dataset not in categories:
                    categories.append(row.dataset)
                for key, (mean, _, _) in row.values.items():
                    if mean is not None:
                        series.setdefault("{}: {}".format(table.setting, group_label(key)),
                                          {})[row.dataset] = mean
    if not series:
        raise ResultsError("nothing to plot: no finished run matched")
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(1, len(series) / 3)), 4.5))
    for i, (label, values) in enumerate(series.items()):
        xs = [c + (i - (len(series) - 1) / 2.0) * width
              for c, name in enumerate(categories) if values.get(name) is not None]
        ys = [values[name] for name in categories if values.get(name) is not None]
        ax.bar(xs, ys, width=width, label=label)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -------------------------------------------------------------------- CLI

def build_parser():
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
                        help="add the published 11-dataset base-to-novel averages")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart to this file")
    return parser


def warn(message):
    print("warning: " + message, file=sys.stderr)


def report(args):
    """Collect, filter and print; return the process exit status."""
    collection = collect_results(args.root)
    for log in collection.incomplete:
        warn("{}: no '* accuracy:' line (unfinished or failed run); not counted".format(log))
    for log in collection.unrecognised:
        warn("{}: not in a CoOp-family layout (.../seed<N>/log.txt); not counted".format(log))
    runs = filter_runs(collection.runs, args.trainer, args.cfg, args.shots, args.dataset,
                       args.seed, args.setting)
    if not runs:
        print("error: no finished run (a log.txt with '* accuracy:') under {}{}".format(
            args.root, " matches the filters" if collection.runs else ""), file=sys.stderr)
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
    if args.format == "csv":
        sys.stdout.write(render_csv(tables, acc_tables, args.published, dg_tables))
    else:
        sys.stdout.write(render_tables(tables, acc_tables, args.published, args.format,
                                       dg_tables))
    if args.plot:
        plot_results(args.plot, tables, acc_tables, args.published)
        print("Saved the plot to {}".format(args.plot), file=sys.stderr)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return report(args)
    except ResultsError as err:
        print("error: {}".format(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
