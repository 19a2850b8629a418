"""Plotting: the bar chart of ``--plot``, the HM per dataset and method
(accuracy without base-to-novel runs), labelled with their values, the y
axis zoomed to them, the legend right of the axes."""
import math
import os
from collections import OrderedDict

from clipwb.results.aggregate import average_label, dataset_order, group_label
from clipwb.results.published import PUBLISHED_BASE2NEW, PUBLISHED_BASE2NEW_PER_DATASET
from clipwb.results.runs import BASE2NEW_DATASETS, ResultsError


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
