"""Aggregating runs: means and standard deviations over seeds, the
base-to-novel tables (one per trainer / config / shots group), their
regrouping per dataset for the comparison, the cross-dataset, few-shot and
domain-generalization tables, and the gaps to the published numbers.

Means and standard deviations are over seeds; the standard deviation is the
population one, as CoOp's ``parse_test_res.py`` computes it. HM = 2BN/(B+N)
is computed from the mean Base and Novel accuracies (its standard deviation
from each seed's own HM); a dataset average averages the per-dataset means
and takes the HM of those averages.
"""
import math
from collections import OrderedDict, defaultdict, namedtuple

from clipwb.results import variants
from clipwb.results.published import (PUBLISHED_BACKBONE, PUBLISHED_BASE2NEW,
                                      PUBLISHED_BASE2NEW_PER_DATASET,
                                      PUBLISHED_DG, PublishedResult, published_for_dataset)
from clipwb.results.run_settings import backbone_of, describe_run
from clipwb.results.runs import BASE2NEW_DATASETS, IMAGENET_VARIANTS, XD_SOURCE

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
    """The label "TRAINER / CFG / K shots" of a group key (CFG as
    :func:`clipwb.results.variants.cfg_label` shows it)."""
    trainer, cfg, shots = key
    return "{} / {} / {} shots".format(trainer, variants.cfg_label(cfg), shots)


# hm_std: the population std of each seed's own HM (the seeds with both splits)
B2NRow = namedtuple("B2NRow", "dataset base base_std novel novel_std hm base_seeds novel_seeds "
                    "hm_std", defaults=(None,))
# backbone: the MODEL.BACKBONE.NAME the group's logs name (several joined by
# " + "), or None when no log has a config dump
B2NTable = namedtuple("B2NTable", "key rows average backbone", defaults=(None,))
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
    backbones = defaultdict(set)
    # test_base (an explicit evaluation on base classes) wins over the test at
    # the end of training, whatever the walk order.
    for run in sorted(runs, key=lambda r: r.phase != "train_base"):
        if run.setting != "base2new":
            continue
        split = "new" if run.phase == "test_new" else "base"
        accs[group_key(run)][run.dataset][split][run.seed] = run.accuracy
        backbone = backbone_of(run.log)
        if backbone:
            backbones[group_key(run)].add(backbone)
    tables = []
    for key in sorted(accs):
        rows = []
        for dataset in dataset_order(accs[key]):
            base = accs[key][dataset]["base"]
            new = accs[key][dataset]["new"]
            b, b_std = mean_std(base.values())
            n, n_std = mean_std(new.values())
            seed_hms = [harmonic_mean(base[s], new[s]) for s in sorted(set(base) & set(new))]
            rows.append(B2NRow(dataset, b, b_std, n, n_std, harmonic_mean(b, n),
                               sorted(base), sorted(new), mean_std(seed_hms)[1]))
        complete = [r for r in rows if r.base is not None and r.novel is not None]
        average = None
        if complete:
            b = sum(r.base for r in complete) / len(complete)
            n = sum(r.novel for r in complete) / len(complete)
            average = B2NRow(average_label([r.dataset for r in complete]), b, None, n,
                             None, harmonic_mean(b, n), None, None)
        tables.append(B2NTable(key, rows, average,
                               " + ".join(sorted(backbones[key])) or None))
    return tables


B2NBlock = namedtuple("B2NBlock", "title rows published")
# rows: [(group label, B2NRow)]; published: [(method, PublishedResult)]


def _mean(values):
    """The mean of a non-empty iterable."""
    values = list(values)
    return sum(values) / len(values)


def table_label(table):
    """A group's label, with its backbone where that is not the published one
    (a toy-CLIP config's label already says so)."""
    label = group_label(table.key)
    cfg = table.key[1]
    if on_published_backbone(table) or variants.cfg_label(cfg) != cfg:
        return label
    return "{} [{}]".format(label, table.backbone)


def on_published_backbone(table):
    """Whether a group's runs are comparable with the published numbers: they
    used the published backbone (ViT-B/16), or their logs do not say."""
    return table.backbone is None or table.backbone == PUBLISHED_BACKBONE


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
        rows.append((table_label(table), B2NRow(label, base, None, novel, None,
                                                    harmonic_mean(base, novel), None, None)))
    title = label if set(common) == set(BASE2NEW_DATASETS) else "{}: {})".format(
        label[:-1], ", ".join(common))
    published = published_averages(common) if any(map(on_published_backbone, tables)) else []
    return B2NBlock(title, rows, published)


def compare_base2new(tables):
    """The ``B2NTable`` s regrouped for the comparison: one ``B2NBlock`` per
    dataset (a row per group that ran it, then that dataset's published
    numbers), then the ``compare_average`` block."""
    blocks = []
    for dataset in dataset_order({r.dataset for t in tables for r in t.rows}):
        groups = [t for t in tables if any(r.dataset == dataset for r in t.rows)]
        rows = [(table_label(t), r) for t in groups for r in t.rows if r.dataset == dataset]
        published = (list(published_for_dataset(dataset).items())
                     if any(map(on_published_backbone, groups)) else [])
        blocks.append(B2NBlock(dataset, rows, published))
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


# ------------------------------------------------------ gaps to published

# our trainer name (lower case) -> the method's name in the published tables,
# where they differ; any other trainer is compared with the method of its name
PUBLISHED_NAME_OF = {"zeroshotclip": "CLIP", "zeroshotclip2": "CLIP", "multimodaladapter": "MMA"}

# one dataset of a group beside the same method's published numbers:
# ours (a B2NRow), published (a PublishedResult), diffs (ours - published for
# Base, Novel, HM; None where ours is missing), noisy (for each, whether the
# std over seeds exceeds |diff|: the gap is within seed noise)
Gap = namedtuple("Gap", "dataset ours published diffs noisy")
GapTable = namedtuple("GapTable", "key method rows")


def published_method(trainer):
    """The name under which ``trainer``'s own numbers are published (the same
    name, case aside; CLIP for the zero-shot CLIP trainers), or None when no
    per-dataset numbers are recorded for it."""
    name = PUBLISHED_NAME_OF.get(trainer.lower(), trainer)
    for method in PUBLISHED_BASE2NEW_PER_DATASET:
        if method.lower() == name.lower():
            return method
    return None


def within_noise(std, diff):
    """Whether a gap ``diff`` to the published number is smaller than the
    standard deviation over seeds ``std`` (False when either is missing)."""
    return std is not None and diff is not None and std > abs(diff)


def dataset_gap(row, published):
    """The ``Gap`` of one of our ``B2NRow`` s to the ``PublishedResult`` of the same dataset."""
    ours = [(row.base, row.base_std), (row.novel, row.novel_std), (row.hm, row.hm_std)]
    diffs = tuple(None if mean is None else mean - pub
                  for (mean, _), pub in zip(ours, (published.base, published.novel, published.hm)))
    noisy = tuple(within_noise(std, diff) for (_, std), diff in zip(ours, diffs))
    return Gap(row.dataset, row, published, diffs, noisy)


def published_gaps(tables):
    """One ``GapTable`` per group of ``tables`` whose trainer has published
    per-dataset numbers: a ``Gap`` per dataset it ran that has them (not for
    a group on another backbone than the published one)."""
    out = []
    for table in tables:
        method = published_method(table.key[0])
        if method is None or not on_published_backbone(table):
            continue
        per = PUBLISHED_BASE2NEW_PER_DATASET[method]
        rows = [dataset_gap(r, per[r.dataset]) for r in table.rows if r.dataset in per]
        if rows:
            out.append(GapTable(table.key, method, rows))
    return out
