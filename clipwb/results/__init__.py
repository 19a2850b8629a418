"""The results tool behind ``scripts/results.py``: CoOp-family runs read from
their ``log.txt`` files, aggregated over seeds, printed beside the published
numbers, plotted.

- ``runs``: the run dirs of an output tree, classified by layout; their
  results; the unfinished or failed ones and why;
- ``run_settings``: what made a run (preset, averaging), read from its log;
- ``aggregate``: means / std over seeds, the base-to-novel, cross-dataset,
  few-shot and domain-generalization tables, the gaps to published numbers;
- ``tables``: the printed tables, the markdown and the CSV;
- ``plot``: the bar chart;
- ``published``: the published numbers (with their sources);
- ``cli``: the command.
"""
from clipwb.results.aggregate import (AccRow, AccTable, B2NBlock, B2NRow, B2NTable,  # noqa: F401
                                      DGTable, Gap, GapTable, average_label, compare_average,
                                      compare_base2new, dataset_gap, dataset_order, group_key,
                                      group_label, harmonic_mean, mean_std, published_averages,
                                      published_gaps, published_method, summarize_accuracy,
                                      summarize_base2new, summarize_dg, within_noise)
from clipwb.results.cli import build_parser, main, report  # noqa: F401
from clipwb.results.plot import (PLOT_DPI, PUBLISHED_SUFFIX, build_plot, draw_bars,  # noqa: F401
                                 place_legend, plot_results, plot_series, y_range)
from clipwb.results.runs import (BASE2NEW_DATASETS, IMAGENET_VARIANTS, SETTINGS,  # noqa: F401
                                 XD_SOURCE, Collection, FailedRun, ResultsError, Run,
                                 classify_run_dir, collect_results, failed_runs, filter_runs,
                                 log_files, log_status, parse_accuracy, run_result, scan_log)
from clipwb.results.tables import (CSV_COLUMNS, GAP_HEADERS, add_section, b2n_cells,  # noqa: F401
                                   compare_rows, fmt, fmt_diff, fmt_seeds, gap_rows, gap_title,
                                   published_rows, render_csv, render_failed, render_tables,
                                   sources_notes)
