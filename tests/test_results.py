"""scripts/results.py on Dassl logs written in the real CoOp-family layouts."""
import csv
import importlib.util
import io
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PY = os.path.join(REPO, "scripts", "results.py")

TRAINER = "PromptSRC"
CFG = "vit_b16_c2_ep20_batch4_4+4ctx"
# accuracy (%) per dataset, split and seed 1, 2, 3
ACCS = {
    "caltech101": {"base": [97.0, 98.0, 99.0], "new": [93.0, 95.0, 97.0]},
    "dtd": {"base": [80.0, 82.0, 84.0], "new": [60.0, 60.0, 63.0]},
}


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("coop_results", RESULTS_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dassl_log(accuracy, total=1000, val_accuracy=None):
    """A log.txt as Dassl writes it: setup, progress, (val), final evaluator block."""
    correct = int(round(total * accuracy / 100.0))
    lines = [
        "Setting fixed seed: 1",
        "Loading trainer: {}".format(TRAINER),
        "epoch [1/2] batch [1/1] time 0.101 (0.101) data 0.010 (0.010) loss 1.2345 (1.2345) "
        "lr 1.0000e-05 eta 0:00:00",
    ]
    if val_accuracy is not None:
        lines += ["Evaluate on the *val* set", "=> result", "* total: 40", "* correct: 20",
                  "* accuracy: {:.1f}%".format(val_accuracy), "* error: 50.0%",
                  "* macro_f1: 49.0%"]
    lines += [
        "Checkpoint saved to output/prompt_learner/model.pth.tar-2",
        "Finish training",
        "Deploy the last-epoch model",
        "Evaluate on the *test* set",
        "=> result",
        "* total: {:,}".format(total),
        "* correct: {:,}".format(correct),
        "* accuracy: {:.1f}%".format(accuracy),
        "* error: {:.1f}%".format(100.0 - accuracy),
        "* macro_f1: {:.1f}%".format(accuracy - 0.7),
        "Elapsed: 0:00:03",
    ]
    return "\n".join(lines) + "\n"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def b2n_dir(root, phase, dataset, seed, trainer=TRAINER, cfg=CFG, shots=16):
    return os.path.join(str(root), phase, dataset, "shots_{}".format(shots), trainer, cfg,
                        "seed{}".format(seed))


@pytest.fixture
def b2n_root(tmp_path):
    """output/base2new with 2 datasets x 3 seeds, plus one unfinished run."""
    root = tmp_path / "output" / "base2new"
    for dataset, accs in ACCS.items():
        for seed in (1, 2, 3):
            write(os.path.join(b2n_dir(root, "train_base", dataset, seed), "log.txt"),
                  dassl_log(accs["base"][seed - 1]))
            write(os.path.join(b2n_dir(root, "test_new", dataset, seed), "log.txt"),
                  dassl_log(accs["new"][seed - 1]))
    # a training run that stopped before its test: reported, never counted
    write(os.path.join(b2n_dir(root, "train_base", "dtd", 4), "log.txt"),
          dassl_log(10.0).split("=> result")[0])
    return root


def run_cli(*args):
    proc = subprocess.run([sys.executable, RESULTS_PY] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    return proc


def markdown_rows(text):
    """Cells of the markdown table rows (header and separator excluded)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_parse_accuracy_takes_the_last_result_line(tmp_path, results):
    path = write(tmp_path / "log.txt", dassl_log(91.2, val_accuracy=50.0))
    assert results.parse_accuracy(path) == pytest.approx(91.2)
    assert results.parse_accuracy(write(tmp_path / "b" / "log.txt", "epoch [1/2]\n")) is None
    # the per-class "* average:" line and macro_f1 are not the accuracy
    text = dassl_log(75.5) + "=> per-class result\n* class: 0 (face)\ttotal: 4\tcorrect: 4\tacc: 100.0%\n* average: 99.0%\n"
    assert results.parse_accuracy(write(tmp_path / "c" / "log.txt", text)) == pytest.approx(75.5)


def test_newest_log_with_a_result_wins(tmp_path, results):
    run = tmp_path / "seed1"
    write(run / "log.txt", dassl_log(70.0))
    write(run / "log.txt-2024-01-02-10-00-00", dassl_log(80.0))
    # the newest log is an interrupted re-run: the previous result stands
    write(run / "log.txt-2024-01-03-10-00-00", "epoch [1/2] batch [1/1]\n")
    log, acc = results.run_result(str(run))
    assert acc == pytest.approx(80.0)
    assert log.endswith("log.txt-2024-01-02-10-00-00")


def test_collect_results_classifies_the_base2new_layout(b2n_root, results):
    collection = results.collect_results(str(b2n_root))
    assert len(collection.runs) == 12
    run = [r for r in collection.runs if r.dataset == "dtd" and r.seed == 3
           and r.phase == "test_new"][0]
    assert (run.setting, run.trainer, run.cfg, run.shots, run.accuracy) == (
        "base2new", TRAINER, CFG, 16, 63.0)
    assert [os.path.relpath(p, str(b2n_root)) for p in collection.incomplete] == [
        os.path.join("train_base", "dtd", "shots_16", TRAINER, CFG, "seed4", "log.txt")]


def test_base2new_means_std_and_hm_by_hand(b2n_root, results):
    tables = results.summarize_base2new(results.collect_results(str(b2n_root)).runs)
    assert len(tables) == 1
    table = tables[0]
    assert table.key == (TRAINER, CFG, 16)
    rows = {r.dataset: r for r in table.rows}
    cal, dtd = rows["caltech101"], rows["dtd"]
    # caltech101: Base 97, 98, 99; Novel 93, 95, 97
    assert cal.base == pytest.approx(98.0)
    assert cal.base_std == pytest.approx((2.0 / 3.0) ** 0.5)  # population std
    assert cal.novel == pytest.approx(95.0)
    assert cal.novel_std == pytest.approx((8.0 / 3.0) ** 0.5)
    assert cal.hm == pytest.approx(2 * 98.0 * 95.0 / (98.0 + 95.0))
    # dtd: Base 80, 82, 84; Novel 60, 60, 63 (the unfinished seed 4 is not counted)
    assert dtd.base == pytest.approx(82.0) and dtd.base_seeds == [1, 2, 3]
    assert dtd.novel == pytest.approx(61.0)
    assert dtd.novel_std == pytest.approx(2.0 ** 0.5)
    assert dtd.hm == pytest.approx(2 * 82.0 * 61.0 / 143.0)
    # the average: means of the dataset means, HM of the two averages
    avg = table.average
    assert avg.dataset == "Average (2 datasets)"
    assert (avg.base, avg.novel) == (pytest.approx(90.0), pytest.approx(78.0))
    assert avg.hm == pytest.approx(2 * 90.0 * 78.0 / 168.0)


def test_cli_table_reports_logs_without_result(b2n_root):
    proc = run_cli(b2n_root)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Base-to-novel: PromptSRC / {} / 16 shots".format(CFG) in out
    assert "98.00 ± 0.82" in out and "95.00 ± 1.63" in out and "96.48" in out
    assert "82.00 ± 1.63" in out and "61.00 ± 1.41" in out and "69.96" in out
    assert "Average (2 datasets)" in out and "83.57" in out
    assert "Average (11 datasets)" not in out
    # the unfinished run: listed once, after the tables, with its log's last line
    seed4 = os.path.join(str(b2n_root), "train_base", "dtd", "shots_16", TRAINER, CFG, "seed4")
    assert out.count("seed4") == 1
    assert out.endswith("\n\nUnfinished or failed runs (not counted):\n"
                        "  {}: unfinished (last line: Evaluate on the *test* set)\n".format(seed4))
    assert out.index("Unfinished or failed runs") > out.index("Average (2 datasets)")
    assert "seed4" not in proc.stderr and "not counted" not in proc.stderr


def test_cli_markdown_cells(b2n_root):
    proc = run_cli(b2n_root, "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "### Base-to-novel: PromptSRC" in proc.stdout
    rows = markdown_rows(proc.stdout)
    assert rows[0] == ["Dataset", "Base", "Novel", "HM", "Seeds"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["caltech101"] == ["caltech101", "98.00 ± 0.82", "95.00 ± 1.63", "96.48", "1,2,3"]
    assert by_name["dtd"][1:4] == ["82.00 ± 1.63", "61.00 ± 1.41", "69.96"]
    assert by_name["Average (2 datasets)"][1:4] == ["90.00", "78.00", "83.57"]


def test_cli_csv(b2n_root):
    proc = run_cli(b2n_root, "--format", "csv", "--published")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    ours = {r["dataset"]: r for r in rows if r["setting"] == "base2new"}
    assert ours["caltech101"]["base"] == "98.00"
    assert ours["caltech101"]["base_std"] == "0.82"
    assert ours["caltech101"]["novel_std"] == "1.63"
    assert ours["caltech101"]["hm"] == "96.48"
    assert ours["caltech101"]["seeds"] == "1 2 3"
    assert (ours["caltech101"]["trainer"], ours["caltech101"]["cfg"]) == (TRAINER, CFG)
    assert ours["Average (2 datasets)"]["hm"] == "83.57"
    published = {(r["trainer"], r["dataset"]): r for r in rows if r["setting"] == "published"}
    eleven = "Average (11 datasets)"
    assert (published["PromptSRC", eleven]["base"], published["PromptSRC", eleven]["novel"],
            published["PromptSRC", eleven]["hm"]) == ("84.26", "76.10", "79.97")
    assert published["CLIP", eleven]["hm"] == "71.70"
    # and the per-dataset numbers of the papers' tables
    assert [published["PromptSRC", "dtd"][k] for k in ("base", "novel", "hm")] == [
        "83.37", "62.97", "71.75"]
    assert published["CoOp", "eurosat"]["hm"] == "68.69"
    assert "warning" not in proc.stdout  # warnings go to stderr, CSV stays clean
    # so does the list of unfinished runs
    assert "seed4" not in proc.stdout
    assert proc.stderr.startswith("Unfinished or failed runs (not counted):\n  ")
    assert "seed4: unfinished (last line: Evaluate on the *test* set)" in proc.stderr


def test_cli_published_and_plot(b2n_root, tmp_path):
    png = tmp_path / "plots" / "hm.png"
    proc = run_cli(b2n_root, "--published", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    for name, numbers in [("CLIP", "69.34 74.22 71.70"), ("CoOp", "82.69 63.22 71.66"),
                          ("CoCoOp", "80.47 71.69 75.83"), ("MaPLe", "82.28 75.14 78.55"),
                          ("IVLP", "84.21 71.79 77.51"), ("PromptSRC", "84.26 76.10 79.97")]:
        line = [ln for ln in proc.stdout.splitlines() if ln.split()[:1] == [name]]
        assert line and " ".join(line[0].split()[1:4]) == numbers
    assert "ours: PromptSRC" in proc.stdout
    with open(str(png), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 1000


def test_published_numbers_are_extendable(results):
    from clipwb.results.published import PUBLISHED_BASE2NEW, add_published
    add_published("MyMethod", 85.0, 77.0, 80.8, "this test")
    try:
        rows = results.published_rows([])
        assert ["MyMethod", "85.00", "77.00", "80.80", "this test"] in rows
    finally:
        del PUBLISHED_BASE2NEW["MyMethod"]


def test_eleven_dataset_average_label_and_test_base_preference(tmp_path, results):
    root = tmp_path / "base2new"
    for dataset in results.BASE2NEW_DATASETS:
        write(os.path.join(b2n_dir(root, "train_base", dataset, 1), "log.txt"), dassl_log(80.0))
        write(os.path.join(b2n_dir(root, "test_new", dataset, 1), "log.txt"), dassl_log(70.0))
    # an explicit evaluation on the base classes replaces the training run's test
    write(os.path.join(b2n_dir(root, "test_base", "dtd", 1), "log.txt"), dassl_log(91.0))
    table = results.summarize_base2new(results.collect_results(str(root)).runs)[0]
    assert table.average.dataset == "Average (11 datasets)"
    assert [r.dataset for r in table.rows] == results.BASE2NEW_DATASETS
    assert {r.dataset: r.base for r in table.rows}["dtd"] == pytest.approx(91.0)
    assert table.average.base == pytest.approx((10 * 80.0 + 91.0) / 11)


def test_filters_and_missing_novel_warning(b2n_root, tmp_path):
    # another trainer in the same tree, Base only
    write(os.path.join(b2n_dir(b2n_root, "train_base", "dtd", 1, trainer="CoOp",
                               cfg="vit_b16_ctxv1"), "log.txt"), dassl_log(77.0))
    proc = run_cli(b2n_root, "--trainer", "coop")
    assert proc.returncode == 0, proc.stderr
    assert "CoOp / vit_b16_ctxv1" in proc.stdout and "PromptSRC" not in proc.stdout
    assert "77.00 ± 0.00" in proc.stdout
    assert "Novel seeds none" in proc.stderr
    proc = run_cli(b2n_root, "--trainer", TRAINER, "--dataset", "dtd", "--seed", "2")
    assert "82.00 ± 0.00" in proc.stdout and "60.00 ± 0.00" in proc.stdout
    assert "caltech101" not in proc.stdout


def test_cross_dataset_and_few_shot_tables(tmp_path, results):
    out = tmp_path / "output"
    xd_cfg = "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"
    for seed, (src, pets, sketch) in enumerate([(70.0, 90.0, 48.0), (72.0, 92.0, 50.0)], 1):
        write(os.path.join(str(out), "imagenet", "MaPLe", xd_cfg + "_16shots",
                           "seed{}".format(seed), "log.txt"), dassl_log(src))
        for dataset, acc in (("oxford_pets", pets), ("imagenet_sketch", sketch)):
            write(os.path.join(str(out), "evaluation", "MaPLe", xd_cfg + "_16shots", dataset,
                               "seed{}".format(seed), "log.txt"), dassl_log(acc))
    # CoOp's few-shot layout with its nctx/csc/ctp level
    for seed, acc in ((1, 91.0), (2, 93.0)):
        write(os.path.join(str(out), "caltech101", "CoOp", "vit_b16_ep50_1shots",
                           "nctx16_cscFalse_ctpend", "seed{}".format(seed), "log.txt"),
              dassl_log(acc))
    runs = results.collect_results(str(out)).runs
    xd = results.summarize_accuracy(runs, "cross-dataset")
    key = ("MaPLe", xd_cfg, 16)
    assert xd.keys == [key]
    rows = {r.dataset: r.values[key] for r in xd.rows + xd.averages}
    assert rows["imagenet (source)"][:2] == (pytest.approx(71.0), pytest.approx(1.0))
    assert rows["oxford_pets"][0] == pytest.approx(91.0)
    assert rows["Average (1 cross-dataset target)"][0] == pytest.approx(91.0)
    assert rows["Average (1 ImageNet variant)"][0] == pytest.approx(49.0)
    fs = results.summarize_accuracy(runs, "few-shot")
    fs_key = ("CoOp", "vit_b16_ep50/nctx16_cscFalse_ctpend", 1)
    assert fs.keys == [fs_key]  # the ImageNet source run is not a few-shot row
    assert fs.rows[0].dataset == "caltech101"
    assert fs.rows[0].values[fs_key][:2] == (pytest.approx(92.0), pytest.approx(1.0))

    proc = run_cli(out, "--setting", "cross-dataset", "few-shot")
    assert proc.returncode == 0, proc.stderr
    assert "Cross-dataset accuracy" in proc.stdout and "Few-shot accuracy" in proc.stdout
    assert "71.00 ± 1.00" in proc.stdout and "92.00 ± 1.00" in proc.stdout
    proc = run_cli(out, "--cfg", "vit_b16_ep50", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["setting"], r["dataset"], r["accuracy"], r["seeds"]) for r in rows] == [
        ("few-shot", "caltech101", "92.00", "2"),
        ("few-shot", "Average (1 dataset)", "92.00", "")]


def test_bad_input_gives_one_clear_error(tmp_path):
    proc = run_cli(tmp_path / "nope")
    assert proc.returncode == 2
    assert "no such directory" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    write(os.path.join(str(empty), "x", "seed1", "log.txt"), "no result here\n")
    proc = run_cli(empty)
    assert proc.returncode == 1
    assert "no finished run" in proc.stderr and "not counted" in proc.stderr
    assert proc.stderr.index("no finished run") < proc.stderr.index("not counted")
    assert "{}: unfinished (last line: no result here)".format(
        os.path.join(str(empty), "x", "seed1")) in proc.stderr
    assert proc.stdout == ""
