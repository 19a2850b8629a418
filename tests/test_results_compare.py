"""scripts/results.py: the per-dataset comparison of several methods, the list
of unfinished / failed runs, and the HM bar plot, on real-format Dassl logs."""
import csv
import io
import math
import os
import re
import struct
from collections import OrderedDict

import pytest

from tests.test_results import (CFG, TRAINER, b2n_dir, b2n_root, dassl_log,  # noqa: F401
                                markdown_rows, results, run_cli, write)

COOP, COOP_CFG = "CoOp", "vit_b16_ctxv1"
COOP_LABEL = "CoOp / vit_b16_ctxv1 / 16 shots"
SRC_LABEL = "PromptSRC / {} / 16 shots".format(CFG)
# CoOp's mean Base / Novel per dataset; seeds 1, 2, 3 add -1, 0, +1 to Base
# and -0.5, 0, +0.5 to Novel (population std 0.82 and 0.41)
COOP_ACCS = {"caltech101": (96.5, 92.0), "dtd": (80.3, 73.3)}


def write_coop(root, accs=COOP_ACCS, seeds=(1, 2, 3), trainer=COOP, cfg=COOP_CFG):
    """Base-to-novel logs of a second method beside the fixture's PromptSRC."""
    for dataset, (base, novel) in accs.items():
        for seed in seeds:
            kw = dict(trainer=trainer, cfg=cfg)
            write(os.path.join(b2n_dir(root, "train_base", dataset, seed, **kw), "log.txt"),
                  dassl_log(base + (seed - 2) if len(seeds) > 1 else base))
            write(os.path.join(b2n_dir(root, "test_new", dataset, seed, **kw), "log.txt"),
                  dassl_log(novel + 0.5 * (seed - 2) if len(seeds) > 1 else novel))


def text_sections(text):
    """OrderedDict title -> (headers, rows, notes) of a ``--format table`` report;
    cells are split on runs of 2+ spaces (a row's empty last cell drops out)."""
    blocks = text.strip("\n").split("\n\n")
    sections = OrderedDict()
    for i, block in enumerate(blocks):
        lines = block.splitlines()
        if i and len(lines) >= 2 and lines[1] and set(lines[1]) <= set("- "):
            cells = [re.split(r"\s{2,}", line.strip()) for line in lines]
            after = blocks[i + 1].splitlines() if i + 1 < len(blocks) else []
            notes = after if after and after[0].startswith("(published)") else []
            sections[blocks[i - 1].strip()] = (cells[0], cells[2:], notes)
    return sections


def hm(base, novel):
    return 2 * base * novel / (base + novel)


# The papers' per-dataset numbers (clipwb/results/published.py) as the
# comparison prints them: CLIP, CoOp, CoCoOp from CoCoOp's Table 1, MaPLe and
# PromptSRC from their papers' tables (the Seeds cell is empty).
PUBLISHED_CALTECH = [["CLIP (published)", "96.84", "94.00", "95.40"],
                     ["CoOp (published)", "98.00", "89.81", "93.73"],
                     ["CoCoOp (published)", "97.96", "93.81", "95.84"],
                     ["MaPLe (published)", "97.74", "94.36", "96.02"],
                     ["PromptSRC (published)", "98.10", "94.03", "96.02"]]
PUBLISHED_DTD = [["CLIP (published)", "53.24", "59.90", "56.37"],
                 ["CoOp (published)", "79.44", "41.18", "54.24"],
                 ["CoCoOp (published)", "77.01", "56.00", "64.85"],
                 ["MaPLe (published)", "80.36", "59.18", "68.16"],
                 ["PromptSRC (published)", "83.37", "62.97", "71.75"]]
GAP_TITLE = "Gap to the published numbers: {} vs {} (published)"


def published_notes():
    """The source lines under a block of the five methods' per-dataset numbers."""
    from clipwb.results.published import PUBLISHED_BASE2NEW_PER_DATASET as per
    return ["(published) CLIP, CoOp, CoCoOp: " + per["CoOp"]["dtd"].source,
            "(published) MaPLe: " + per["MaPLe"]["dtd"].source,
            "(published) PromptSRC: " + per["PromptSRC"]["dtd"].source]


def published_means(datasets_rows):
    """The published rows averaged over datasets by hand: mean Base, mean
    Novel, HM of the two means."""
    out = []
    for rows in zip(*datasets_rows):
        base = sum(float(r[1]) for r in rows) / len(rows)
        novel = sum(float(r[2]) for r in rows) / len(rows)
        out.append([rows[0][0], "{:.2f}".format(base), "{:.2f}".format(novel),
                    "{:.2f}".format(hm(base, novel))])
    return out


# ------------------------------------------------------------- comparison

def test_compare_is_the_default_with_several_groups(b2n_root):
    write_coop(b2n_root)
    proc = run_cli(b2n_root)
    assert proc.returncode == 0, proc.stderr
    sections = text_sections(proc.stdout)
    # CoOp and PromptSRC have published per-dataset numbers: a gap table each
    assert list(sections) == ["Base-to-novel: caltech101", "Base-to-novel: dtd",
                              "Base-to-novel: Average (2 datasets: caltech101, dtd)",
                              GAP_TITLE.format(COOP_LABEL, "CoOp"),
                              GAP_TITLE.format(SRC_LABEL, "PromptSRC")]
    headers, rows, notes = sections["Base-to-novel: caltech101"]
    assert headers == ["Method", "Base", "Novel", "HM", "Seeds"]
    assert rows[:2] == [[COOP_LABEL, "96.50 ± 0.82", "92.00 ± 0.41", "94.20", "1,2,3"],
                        [SRC_LABEL, "98.00 ± 0.82", "95.00 ± 1.63", "96.48", "1,2,3"]]
    assert rows[2:] == PUBLISHED_CALTECH  # the papers' numbers of the dataset
    assert notes == published_notes()
    _, rows, notes = sections["Base-to-novel: dtd"]
    assert rows[:2] == [[COOP_LABEL, "80.30 ± 0.82", "73.30 ± 0.41", "76.64", "1,2,3"],
                        [SRC_LABEL, "82.00 ± 1.63", "61.00 ± 1.41", "69.96", "1,2,3"]]
    assert rows[2:] == PUBLISHED_DTD
    assert notes == published_notes()
    headers, rows, _ = sections["Base-to-novel: Average (2 datasets: caltech101, dtd)"]
    # means of the dataset means, HM of the means; no Seeds column; the
    # published numbers averaged the same way over the same 2 datasets
    assert headers == ["Method", "Base", "Novel", "HM"]
    assert rows[:2] == [[COOP_LABEL, "88.40", "82.65", "{:.2f}".format(hm(88.4, 82.65))],
                        [SRC_LABEL, "90.00", "78.00", "83.57"]]
    assert rows[2:] == published_means([PUBLISHED_CALTECH, PUBLISHED_DTD])
    # MaPLe: Base (97.74 + 80.36) / 2, Novel (94.36 + 59.18) / 2, HM 2BN/(B+N)
    assert rows[5] == ["MaPLe (published)", "89.05", "76.77", "82.46"]
    # CoOp's gap on caltech101: HM of the means 94.196 - 93.73 = +0.47, within
    # the std 0.60 of the seeds' HMs (93.46, 94.20, 94.93)
    _, rows, _ = sections[GAP_TITLE.format(COOP_LABEL, "CoOp")]
    assert rows[0] == ["caltech101", "96.50 ± 0.82", "98.00", "-1.50", "92.00 ± 0.41", "89.81",
                       "+2.19", "94.20 ± 0.60", "93.73", "+0.47*"]
    assert "Base-to-novel: PromptSRC" not in proc.stdout  # no per-trainer table
    # 2 data columns of "98.00 ± 0.82" fit in a 120-column terminal
    assert max(len(line) for line in proc.stdout.splitlines() if "seed" not in line) <= 120


def test_per_trainer_flag_keeps_one_table_per_group(b2n_root):
    write_coop(b2n_root)
    proc = run_cli(b2n_root, "--per-trainer")
    assert proc.returncode == 0, proc.stderr
    sections = text_sections(proc.stdout)
    assert list(sections) == ["Base-to-novel: " + COOP_LABEL, "Base-to-novel: " + SRC_LABEL]
    headers, rows, _ = sections["Base-to-novel: " + COOP_LABEL]
    assert headers == ["Dataset", "Base", "Novel", "HM", "Seeds"]
    assert rows[1] == ["dtd", "80.30 ± 0.82", "73.30 ± 0.41", "76.64", "1,2,3"]
    assert run_cli(b2n_root, "--no-compare").stdout == proc.stdout
    # --compare with one group: the per-dataset tables, one method each
    proc = run_cli(b2n_root, "--compare", "--trainer", TRAINER)
    sections = text_sections(proc.stdout)
    assert list(sections)[0] == "Base-to-novel: caltech101"
    assert sections["Base-to-novel: dtd"][1] == [
        [SRC_LABEL, "82.00 ± 1.63", "61.00 ± 1.41", "69.96", "1,2,3"]] + PUBLISHED_DTD
    assert run_cli(b2n_root, "--compare", "--per-trainer").returncode == 2  # exclusive


def test_compare_markdown_and_flat_csv(b2n_root):
    write_coop(b2n_root)
    proc = run_cli(b2n_root, "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "### Base-to-novel: dtd\n" in out
    dtd = out.split("### Base-to-novel: dtd\n")[1].split("###")[0]
    assert markdown_rows(dtd) == [
        ["Method", "Base", "Novel", "HM", "Seeds"],
        [COOP_LABEL, "80.30 ± 0.82", "73.30 ± 0.41", "76.64", "1,2,3"],
        [SRC_LABEL, "82.00 ± 1.63", "61.00 ± 1.41", "69.96", "1,2,3"]] + [
        row + [""] for row in PUBLISHED_DTD]
    assert "### Unfinished or failed runs (not counted)\n\n- `" in out
    # CSV: the same flat table whichever view is asked for
    flat = run_cli(b2n_root, "--format", "csv")
    assert flat.stdout == run_cli(b2n_root, "--format", "csv", "--per-trainer").stdout
    rows = list(csv.DictReader(io.StringIO(flat.stdout)))
    assert {(r["trainer"], r["dataset"]): r["hm"] for r in rows} == {
        (COOP, "caltech101"): "94.20", (COOP, "dtd"): "76.64",
        (COOP, "Average (2 datasets)"): "85.43",
        (TRAINER, "caltech101"): "96.48", (TRAINER, "dtd"): "69.96",
        (TRAINER, "Average (2 datasets)"): "83.57"}


def test_compare_shows_the_published_numbers_of_each_dataset(b2n_root, results, monkeypatch):
    from clipwb.results.published import PUBLISHED_BASE2NEW_PER_DATASET, add_published
    write_coop(b2n_root)
    # one more method, added from code, on dtd only (removed again after the test)
    monkeypatch.setitem(PUBLISHED_BASE2NEW_PER_DATASET, "Other", OrderedDict())
    add_published("Other", 70.0, 60.0, 64.62, "paper B, Table 2", dataset="dtd")
    tables = results.summarize_base2new(results.collect_results(str(b2n_root)).runs)
    text = results.render_tables(tables, [], False, "table", compare=True)
    sections = text_sections(text)
    _, rows, notes = sections["Base-to-novel: dtd"]
    assert rows[2:] == PUBLISHED_DTD + [["Other (published)", "70.00", "60.00", "64.62"]]
    assert notes == published_notes() + ["(published) Other: paper B, Table 2"]
    _, rows, notes = sections["Base-to-novel: caltech101"]
    assert rows[2:] == PUBLISHED_CALTECH
    assert notes == published_notes()
    # the average over the 2 datasets: the methods published on both, not Other
    _, rows, notes = sections["Base-to-novel: Average (2 datasets: caltech101, dtd)"]
    assert rows[2:] == published_means([PUBLISHED_CALTECH, PUBLISHED_DTD])
    assert notes == published_notes()
    # per-trainer view: no per-dataset published rows
    assert "(published)" not in results.render_tables(tables, [], False, "table")
    # CSV with --published: the per-dataset rows too
    rows = list(csv.DictReader(io.StringIO(results.render_csv(tables, [], True))))
    assert [(r["trainer"], r["dataset"], r["hm"]) for r in rows
            if r["setting"] == "published" and r["dataset"] == "dtd"] == [
        ("CLIP", "dtd", "56.37"), ("CoOp", "dtd", "54.24"), ("CoCoOp", "dtd", "64.85"),
        ("MaPLe", "dtd", "68.16"), ("PromptSRC", "dtd", "71.75"), ("Other", "dtd", "64.62")]


def test_compare_eleven_datasets_beside_the_published_averages(tmp_path):
    root = tmp_path / "base2new"
    datasets = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
                "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
    for trainer, cfg, base, novel in ((COOP, COOP_CFG, 82.0, 63.0), (TRAINER, CFG, 84.0, 76.0)):
        for dataset in datasets:
            write(os.path.join(b2n_dir(root, "train_base", dataset, 1, trainer, cfg), "log.txt"),
                  dassl_log(base))
            write(os.path.join(b2n_dir(root, "test_new", dataset, 1, trainer, cfg), "log.txt"),
                  dassl_log(novel))
    for args in ((), ("--published",)):
        proc = run_cli(root, *args)
        assert proc.returncode == 0, proc.stderr
        sections = text_sections(proc.stdout)
        # the comparison, then each group's gaps to its own method's numbers
        assert list(sections)[-3:] == ["Base-to-novel: Average (11 datasets)",
                                       GAP_TITLE.format(COOP_LABEL, "CoOp"),
                                       GAP_TITLE.format(SRC_LABEL, "PromptSRC")]
        _, gaps, _ = sections[GAP_TITLE.format(SRC_LABEL, "PromptSRC")]
        assert [g[0] for g in gaps] == datasets
        # ours 84 / 76 on eurosat against PromptSRC's 92.90 / 73.90 / 82.32
        assert gaps[9] == ["eurosat", "84.00 ± 0.00", "92.90", "-8.90", "76.00 ± 0.00", "73.90",
                           "+2.10", "79.80 ± 0.00", "82.32", "-2.52"]
        _, rows, notes = sections["Base-to-novel: Average (11 datasets)"]
        assert rows[:2] == [[COOP_LABEL, "82.00", "63.00", "{:.2f}".format(hm(82.0, 63.0))],
                            [SRC_LABEL, "84.00", "76.00", "{:.2f}".format(hm(84.0, 76.0))]]
        published = {r[0]: r[1:] for r in rows[2:]}
        assert published["PromptSRC (published)"] == ["84.26", "76.10", "79.97"]
        assert published["CLIP (published)"] == ["69.34", "74.22", "71.70"]
        assert set(published) == {"{} (published)".format(n) for n in (
            "CLIP", "CoOp", "CoCoOp", "MaPLe", "IVLP", "PromptSRC", "KgCoOp", "TCP", "ProGrad",
            "MMRL", "MMA", "ExtrasLinearProbePromptSRC")}
        # the papers' own 11-dataset averages, not means of their per-dataset rows
        assert published["CoOp (published)"] == ["82.69", "63.22", "71.66"]
        assert "(published) IVLP, PromptSRC: Khattak et al., PromptSRC, ICCV 2023" in notes
        # shown once: no separate table of the published averages
        assert "Published 11-dataset averages" not in proc.stdout
    # over 2 of the datasets, --published adds the 11-dataset table apart
    proc = run_cli(root, "--published", "--dataset", "caltech101", "dtd")
    sections = text_sections(proc.stdout)
    assert [t for t in sections if not t.startswith("Gap")][-2:] == [
        "Base-to-novel: Average (2 datasets: caltech101, dtd)",
        "Published 11-dataset averages (ViT-B/16, 16 shots) and ours"]
    # over 2 datasets the published rows are the means of those 2 datasets' numbers
    _, rows, _ = sections["Base-to-novel: Average (2 datasets: caltech101, dtd)"]
    assert rows[2:] == published_means([PUBLISHED_CALTECH, PUBLISHED_DTD])


# ------------------------------------------------- unfinished / failed runs

TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 210, in <module>
    main(args)
  File "train.py", line 150, in main
    trainer.train()
{}
"""


@pytest.mark.parametrize("text, status", [
    ("epoch [1/2]\nError: CUDA out of memory (batch 4)\n", "Error: CUDA out of memory (batch 4)"),
    ("epoch [1/2]\n" + TRACEBACK.format("KeyboardInterrupt"), "KeyboardInterrupt"),
    ("epoch [1/2]\n" + TRACEBACK.format("RuntimeError: shape mismatch"),
     "RuntimeError: shape mismatch"),
    # a chained traceback: the last exception wins
    (TRACEBACK.format("ValueError: a") + "\nDuring handling of the above exception, another "
     "exception occurred:\n\n" + TRACEBACK.format("torch.OutOfMemoryError: CUDA out of memory"),
     "torch.OutOfMemoryError: CUDA out of memory"),
    # whatever the exception is called, a traceback ends in it
    (TRACEBACK.format("cv2.error: OpenCV(4.8.0) (-215:Assertion failed) !_src.empty()"),
     "cv2.error: OpenCV(4.8.0) (-215:Assertion failed) !_src.empty()"),
    ("epoch [3/20] batch [1/5]\nInterrupted (SIGTERM) at epoch 3; checkpoint saved\n",
     "Interrupted (SIGTERM) at epoch 3; checkpoint saved"),
    ("Loading trainer: CoOp\nepoch [1/2] batch [1/1] loss 1.2\n\n",
     "unfinished (last line: epoch [1/2] batch [1/1] loss 1.2)"),
    ("", "unfinished (empty log)"),
    ("Loading trainer: CoOp\n" + "x" * 200 + "\n", "unfinished (last line: " + "x" * 77 + "...)"),
    ("Error: " + "y" * 200 + "\n", "Error: " + "y" * 110 + "..."),
])
def test_log_status_reads_the_error_line(tmp_path, results, text, status):
    assert results.log_status(write(tmp_path / "log.txt", text)) == status


def failing_tree(root):
    """The fixture's tree (PromptSRC, dtd seed4 unfinished) plus CoOp's runs and
    failures, and a run dir outside the known layouts."""
    write_coop(root)
    coop = dict(trainer=COOP, cfg=COOP_CFG)
    write(os.path.join(b2n_dir(root, "test_new", "dtd", 5, **coop), "log.txt"),
          "Loading trainer: CoOp\n" + TRACEBACK.format("RuntimeError: CUDA error")
          + "Error: RuntimeError: CUDA error\n")
    write(os.path.join(b2n_dir(root, "train_base", "caltech101", 6, **coop), "log.txt"),
          "epoch [2/5] batch [1/1]\nInterrupted by SIGTERM at epoch 2\n")
    write(os.path.join(str(root), "scratch", "seed1", "log.txt"), "epoch [1/2]\n")
    return {
        "coop_dtd5": (os.path.join(b2n_dir(root, "test_new", "dtd", 5, **coop)),
                      "Error: RuntimeError: CUDA error"),
        "coop_cal6": (os.path.join(b2n_dir(root, "train_base", "caltech101", 6, **coop)),
                      "Interrupted by SIGTERM at epoch 2"),
        "src_dtd4": (b2n_dir(root, "train_base", "dtd", 4),
                     "unfinished (last line: Evaluate on the *test* set)"),
        "scratch": (os.path.join(str(root), "scratch", "seed1"),
                    "unfinished (last line: epoch [1/2])"),
    }


def failed_lines(stdout):
    """The lines under the failed-runs heading (the heading must come once, last)."""
    head = "\nUnfinished or failed runs (not counted):\n"
    assert stdout.count(head) == 1
    before, after = stdout.split(head)
    assert "Base-to-novel" in before and "Base-to-novel" not in after
    return after.splitlines()


def test_failed_runs_are_listed_once_after_the_tables(b2n_root):
    runs = failing_tree(b2n_root)
    proc = run_cli(b2n_root)
    assert proc.returncode == 0, proc.stderr
    expected = ["  {}: {}".format(*runs[k]) for k in ("scratch", "coop_dtd5", "coop_cal6",
                                                      "src_dtd4")]
    assert failed_lines(proc.stdout) == expected  # in the walk's (sorted) order
    assert "not counted" not in proc.stderr and "seed5" not in proc.stderr
    # the failures changed no number
    assert text_sections(proc.stdout)["Base-to-novel: dtd"][1][0][4] == "1,2,3"


def test_failed_runs_follow_the_filters(b2n_root):
    runs = failing_tree(b2n_root)

    def line(key):
        return "  {}: {}".format(*runs[key])

    proc = run_cli(b2n_root, "--trainer", TRAINER)
    assert failed_lines(proc.stdout) == [line("scratch"), line("src_dtd4")]
    proc = run_cli(b2n_root, "--dataset", "caltech101")
    assert failed_lines(proc.stdout) == [line("scratch"), line("coop_cal6")]
    proc = run_cli(b2n_root, "--cfg", COOP_CFG, "--seed", "1", "2", "3", "5")
    assert failed_lines(proc.stdout) == [line("scratch"), line("coop_dtd5")]
    # only the unclassifiable folder is left: nothing classified matches
    proc = run_cli(b2n_root, "--shots", "16", "--setting", "base2new", "--seed", "1")
    assert failed_lines(proc.stdout) == [line("scratch")]
    # no finished run matches: the error, then the matching failures, on stderr
    proc = run_cli(b2n_root, "--seed", "4")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[1:] == ["Unfinished or failed runs (not counted):",
                                            line("scratch"), line("src_dtd4")]


def test_a_resumed_run_counts_when_any_log_has_a_result(b2n_root):
    run = b2n_dir(b2n_root, "test_new", "dtd", 2)  # the fixture's Novel 60.0
    write(os.path.join(run, "log.txt-2024-01-02-10-00-00"), "epoch [1/2]\nError: disk full\n")
    stuck = b2n_dir(b2n_root, "train_base", "dtd", 4)  # no result in any log
    write(os.path.join(stuck, "log.txt-2024-01-03-10-00-00"), "Interrupted at epoch 1\n")
    proc = run_cli(b2n_root, "--dataset", "dtd")
    assert proc.returncode == 0, proc.stderr
    assert failed_lines(proc.stdout) == [
        "  {} (2 logs, newest log.txt-2024-01-03-10-00-00): Interrupted at epoch 1".format(stuck)]
    _, rows, _ = text_sections(proc.stdout)["Base-to-novel: " + SRC_LABEL]
    assert rows[0] == ["dtd", "82.00 ± 1.63", "61.00 ± 1.41", "69.96", "1,2,3"]


# ------------------------------------------------------------------- plot

def two_method_tables(root, results, accs=None):
    """summarize_base2new of CoOp (dtd HM 76.64) and PromptSRC (dtd HM 76.98), 1 seed."""
    accs = accs or {COOP: {"dtd": (80.3, 73.3)}, TRAINER: {"dtd": (82.7, 72.0)}}
    for trainer, per in accs.items():
        write_coop(root, per, seeds=(1,), trainer=trainer,
                   cfg=COOP_CFG if trainer == COOP else CFG)
    return results.summarize_base2new(results.collect_results(str(root)).runs)


def bar_patches(ax):
    return [p for container in ax.containers for p in container.patches]


def test_plot_zooms_labels_bars_and_keeps_the_legend_clear(tmp_path, results):
    import matplotlib.pyplot as plt
    tables = two_method_tables(tmp_path / "base2new", results)
    assert [round(t.rows[0].hm, 2) for t in tables] == [76.64, 76.98]
    fig, ax = results.build_plot(tables, [], False)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        bottom, top = ax.get_ylim()
        assert 0 < bottom < 76.64 and bottom == 70.0  # floor((76.64 - 5) / 5) * 5
        assert 76.98 < top < 85
        assert [t.get_text() for t in ax.get_xticklabels()] == ["dtd", "Average (1 dataset)"]
        # every bar carries its value, inside the axes
        assert sorted(t.get_text() for t in ax.texts) == ["76.6", "76.6", "77.0", "77.0"]
        axes_box = ax.get_window_extent(renderer)
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert axes_box.y0 < box.y0 and box.y1 <= axes_box.y1
        # the legend is outside the axes and overlaps no bar
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == [COOP_LABEL, SRC_LABEL]
        legend_box = legend.get_window_extent(renderer)
        assert legend_box.x0 >= axes_box.x1
        bars = bar_patches(ax)
        assert len(bars) == 4
        for bar in bars:
            assert not legend_box.overlaps(bar.get_window_extent(renderer))
        # the saved PNG is the tight box around everything, legend included
        tight = fig.get_tightbbox(renderer)
        assert legend_box.x1 / fig.dpi <= tight.x1 + 1e-6
    finally:
        plt.close(fig)
    png = tmp_path / "plots" / "hm.png"
    results.plot_results(str(png), tables, [], False)
    with open(str(png), "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert abs(width - (tight.width + 0.2) * results.PLOT_DPI) <= 2  # 0.1 in padding
    assert abs(height - (tight.height + 0.2) * results.PLOT_DPI) <= 2


def test_plot_with_published_numbers(tmp_path, results):
    import matplotlib.pyplot as plt
    from clipwb.results.published import PUBLISHED_BASE2NEW, PUBLISHED_BASE2NEW_PER_DATASET
    accs = {COOP: {"caltech101": (96.5, 92.0), "dtd": (80.3, 73.3), "eurosat": (91.2, 68.4)},
            TRAINER: {"caltech101": (98.1, 94.0), "dtd": (82.7, 72.0), "eurosat": (92.9, 73.9)}}
    tables = two_method_tables(tmp_path / "base2new", results, accs)
    fig, ax = results.build_plot(tables, [], True)
    n_methods = len(PUBLISHED_BASE2NEW_PER_DATASET)  # 5 with per-dataset numbers
    n_averages = len(PUBLISHED_BASE2NEW)  # those with an 11-dataset average (IVLP, KgCoOp, ...)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "caltech101", "dtd", "eurosat", "Average (3 datasets)", "Average (11 datasets)"]
        # the smallest bar: CoOp's published HM on dtd, 54.24
        assert ax.get_ylim()[0] == math.floor((54.24 - 5) / 5) * 5 == 45
        # per dataset: ours, then each published method there; the published
        # 11-dataset averages in their own category
        labels = [t.get_text() for t in ax.texts]
        assert len(labels) == 3 * (2 + n_methods) + 2 + n_averages
        # caltech101: CoOp HM(96.5, 92.0) = 94.20, PromptSRC HM(98.1, 94.0) = 96.01,
        # then the papers' 95.40, 93.73, 95.84, 96.02, 96.02
        assert labels[:7] == ["94.2", "96.0", "95.4", "93.7", "95.8", "96.0", "96.0"]
        assert labels[-n_averages:] == ["%.1f" % p.hm for p in PUBLISHED_BASE2NEW.values()]
        # the published bars are hatched; none in the 3-dataset average
        bars = bar_patches(ax)
        published = [b for b in bars if b.get_hatch()]
        assert len(published) == 3 * n_methods + n_averages
        assert sum(3.5 < b.get_x() < 4.5 for b in published) == n_averages
        assert not any(2.5 < b.get_x() < 3.5 for b in published)
        assert sum(b.get_x() < 2.5 for b in published) == 3 * n_methods
        # narrow bars (7 or 6 in a category) turn their labels; the 2 of the
        # 3-dataset average do not
        assert [t.get_rotation() for t in ax.texts] == (
            [90.0] * 3 * (2 + n_methods) + [0.0] * 2 + [90.0] * n_averages)
        legend_box = ax.get_legend().get_window_extent(renderer)
        assert not any(legend_box.overlaps(b.get_window_extent(renderer)) for b in bars)
        axes_box = ax.get_window_extent(renderer)
        assert all(t.get_window_extent(renderer).y1 <= axes_box.y1 for t in ax.texts)
    finally:
        plt.close(fig)


def test_y_range(results):
    assert results.y_range([76.64, 76.98], 0.07)[0] == 70.0
    assert results.y_range([71.66, 96.48], 0.07)[0] == 65.0
    assert results.y_range([3.0, 40.0], 0.07)[0] == 0.0  # clamped at 0
    bottom, top = results.y_range([80.0, 90.0], 0.1)
    # the labels' tenth of the axis lies above the tallest bar
    assert (top - 90.0) == pytest.approx(0.1 * (top - bottom))


def config_dump_log(backbone, accuracy):
    """A log with train.py's config dump naming ``backbone``, then a Dassl run."""
    from clipwb.engine import get_cfg_default

    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME = backbone
    return "\n".join(["************", "** Config **", "************", str(cfg),
                      "Collecting env info ..."]) + "\n" + dassl_log(accuracy)


def test_runs_on_another_backbone_are_not_compared_with_the_published_numbers(tmp_path,
                                                                             results):
    """The published numbers are ViT-B/16's: a PromptSRC group whose logs name
    ViT-L/14 gets no gap table, its label says its backbone, and a block where
    no group ran ViT-B/16 has no published rows; the ViT-B/16 group keeps them."""
    root = tmp_path / "base2new"
    groups = {"vit_l14_c2_ep20_batch4_4+4ctx": ("ViT-L/14", 90.0, 80.0),
              CFG: ("ViT-B/16", 84.0, 76.0)}
    for cfg, (backbone, base, novel) in groups.items():
        for dataset in ("caltech101", "dtd"):
            for phase, acc in (("train_base", base), ("test_new", novel)):
                write(os.path.join(b2n_dir(root, phase, dataset, 1, TRAINER, cfg), "log.txt"),
                      config_dump_log(backbone, acc))
    runs = results.collect_results(str(root)).runs
    tables = results.summarize_base2new(runs)
    assert sorted(t.backbone for t in tables) == ["ViT-B/16", "ViT-L/14"]
    large = "PromptSRC / vit_l14_c2_ep20_batch4_4+4ctx / 16 shots [ViT-L/14]"
    gaps = results.published_gaps(tables)
    assert [g.key[1] for g in gaps] == [CFG]
    sections = text_sections(results.render_tables(tables, [], True, "table", compare=True))
    _, rows, _ = sections["Base-to-novel: dtd"]
    assert [r[0] for r in rows[:2]] == [SRC_LABEL, large]
    assert rows[2:] == PUBLISHED_DTD
    assert GAP_TITLE.format(SRC_LABEL, "PromptSRC") in sections
    assert not any(large in title or "vit_l14" in title for title in sections
                   if title.startswith("Gap"))
    # the ViT-L/14 group alone: its blocks have no published rows
    alone = [t for t in tables if t.backbone == "ViT-L/14"]
    text = results.render_tables(alone, [], True, "table", compare=True)
    assert "(published)" not in text and "Gap to the published" not in text
    assert "ours: " not in text
