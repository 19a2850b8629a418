"""Rendering: the printed tables (``simple``, or ``github`` for markdown),
the flat CSV, and the list of unfinished or failed runs.

Base-to-novel: one table per trainer / config / shots group (a row per
dataset), or, for the comparison, one table per dataset with the groups side
by side and the published numbers of that dataset, then the averages over
the datasets every group finished beside the published averages. Each group
whose method has published per-dataset numbers also gets a table of its gaps
to them: per dataset ours (mean ± std over seeds), published, and the
difference, marked ``*`` where the standard deviation over seeds exceeds the
gap (the gap is within seed noise). The CSV carries the same numbers.
"""
import csv
import io
import os
import re
from collections import OrderedDict

from clipwb.results.aggregate import (average_label, compare_base2new, group_label,
                                      on_published_backbone, published_gaps)
from clipwb.results.published import (PUBLISHED_BASE2NEW, PUBLISHED_BASE2NEW_PER_DATASET,
                                      PUBLISHED_DG)
from clipwb.results.runs import BASE2NEW_DATASETS


# ----------------------------------------------------- domain generalization

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
        if table.average is not None and on_published_backbone(table):
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


GAP_HEADERS = ["Dataset", "Base", "Published", "Δ", "Novel", "Published", "Δ",
               "HM", "Published", "Δ"]
GAP_NOTE = ("Δ = ours - published; * the standard deviation over seeds exceeds |Δ| "
            "(the gap is within seed noise)")


def fmt_diff(diff, noisy):
    """A gap cell: "+1.23", "-0.45*" (``*``: within seed noise), "-" when missing."""
    if diff is None:
        return "-"
    return "{:+.2f}{}".format(diff, "*" if noisy else "")


def gap_title(table):
    """The title of a ``GapTable``: our group and the published method."""
    return "Gap to the published numbers: {} vs {} (published)".format(
        group_label(table.key), table.method)


def gap_rows(table):
    """Rows of a ``GapTable``: per dataset, per split (Base, Novel, HM) ours
    (mean ± std over seeds), the published number and the difference."""
    rows = []
    for gap in table.rows:
        r, p = gap.ours, gap.published
        cells = [gap.dataset]
        for mean, std, pub, diff, noisy in zip((r.base, r.novel, r.hm),
                                               (r.base_std, r.novel_std, r.hm_std),
                                               (p.base, p.novel, p.hm), gap.diffs, gap.noisy):
            cells += [fmt(mean, std), fmt(pub), fmt_diff(diff, noisy)]
        rows.append(cells)
    return rows


def gap_notes(table):
    """The legend of the differences, then the sources of the published numbers."""
    sources = OrderedDict((g.published.source, g.published) for g in table.rows)
    return [GAP_NOTE] + sources_notes([(table.method, p) for p in sources.values()])


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
    # per-dataset gaps: with the comparison's published rows, or when asked
    if compare or published:
        for table in published_gaps(tables):
            section(gap_title(table), GAP_HEADERS, gap_rows(table), gap_notes(table))
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
               "novel", "novel_std", "hm", "hm_std", "accuracy", "accuracy_std", "settings",
               "published", "published_base", "published_novel", "published_hm",
               "diff_base", "diff_novel", "diff_hm", "within_seed_noise"]
SPLITS = ("base", "novel", "hm")


def _num(value):
    """A CSV number with 2 decimals, "" when missing."""
    return "" if value is None else "{:.2f}".format(value)


def gap_columns(gap):
    """The CSV cells of a ``Gap``: the published method and numbers, the
    differences and the splits whose gap is within seed noise (as the ``*``
    of the printed table)."""
    p = gap.published
    cells = dict(published_base=_num(p.base), published_novel=_num(p.novel),
                 published_hm=_num(p.hm),
                 within_seed_noise=" ".join(n for n, noisy in zip(SPLITS, gap.noisy) if noisy))
    cells.update(("diff_" + name, _num(diff)) for name, diff in zip(SPLITS, gap.diffs))
    return cells


def render_csv(tables, acc_tables, published, dg_tables=()):
    """One flat CSV of every row (averages have ``dataset`` = their label); a
    base-to-novel dataset row of a method with published per-dataset numbers
    carries them and its gaps (``gap_columns``); a domain-generalization
    row's ``settings`` says what made its runs (the preset and the averaging,
    as under the printed table)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    gaps = {(t.key, g.dataset): (t.method, g) for t in published_gaps(tables) for g in t.rows}
    for table in tables:
        trainer, cfg, shots = table.key
        rows = table.rows + ([table.average] if table.average else [])
        for r in rows:
            row = dict(
                setting="base2new", trainer=trainer, cfg=cfg, shots=shots, dataset=r.dataset,
                seeds=" ".join(map(str, sorted(set(r.base_seeds or []) | set(r.novel_seeds or [])))),
                base=_num(r.base), base_std=_num(r.base_std), novel=_num(r.novel),
                novel_std=_num(r.novel_std), hm=_num(r.hm), hm_std=_num(r.hm_std))
            if (table.key, r.dataset) in gaps:
                method, gap = gaps[table.key, r.dataset]
                row.update(gap_columns(gap), published=method)
            writer.writerow(row)
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
