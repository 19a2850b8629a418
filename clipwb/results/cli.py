"""Collect CoOp-family results from the ``log.txt`` files of an output tree.

The command of ``scripts/results.py`` (its docstring has the usage and the
layouts it reads): parse the arguments, collect and filter the runs, print
the tables (or the CSV) and the unfinished runs, draw the plot.
"""
import argparse
import sys

from clipwb.results.aggregate import (group_label, summarize_accuracy, summarize_base2new,
                                      summarize_dg)
from clipwb.results.plot import plot_results
from clipwb.results.runs import SETTINGS, ResultsError, collect_results, failed_runs, filter_runs
from clipwb.results.tables import render_csv, render_failed, render_tables


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
                             "11-dataset average already shows them) and, per trainer "
                             "group, its gaps to its method's published per-dataset numbers")
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

