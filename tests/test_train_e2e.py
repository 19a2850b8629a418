"""End to end: the real ``train.py`` and run scripts for every registered trainer.

Each trainable trainer trains on the base classes of a tiny Caltech101 (tiny
CLIP, shipped YAML shrunk by command-line opts), resumes into the same folder
with a larger ``OPTIM.MAX_EPOCH``, and is evaluated on the new classes with
``--eval-only --model-dir --load-epoch``. The zero-shot trainers only
evaluate. The run dirs follow the base-to-novel layout, so
``scripts/results.py`` reads their real logs. Two methods also go through
``scripts/<method>/base2new.sh``. All runs share one module fixture and run
two at a time.
"""
import csv
import io
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from tests import e2e_helpers as h
from tests.dataset_layouts import write_dataset

TRAIN_EPOCHS = 3
RESUME_EPOCHS = 4
CFG_NAME = "tiny"
SHOTS = 4  # DATASET.NUM_SHOTS in e2e_helpers.COMMON_OPTS
SCRIPT_METHODS = {"coop": "CoOp", "promptsrc": "PromptSRC"}
# In the slow set (pytest -m slow): the baselines the other runs do not
# stand for (CoOp and PromptSRC are the ones compared with the official code).
SLOW = {"CoCoOp", "IVLP", "MaPLe", "ZeroshotCLIP2", "promptsrc"}
TRAINABLE = h.params(h.TRAINABLE_TRAINERS, SLOW)
ZERO_SHOT = h.params(h.ZERO_SHOT_TRAINERS, SLOW)


def run_dir(out, phase, trainer):
    return os.path.join(out, "base2new", phase, "caltech101", "shots_{}".format(SHOTS),
                        trainer, CFG_NAME, "seed1")


def trainable_chain(ws, trainer):
    """train (base) -> resume with more epochs -> eval-only on the new classes."""
    train_dir = run_dir(ws["output"], "train_base", trainer)
    new_dir = run_dir(ws["output"], "test_new", trainer)

    def train(epochs):
        return h.run_train_py(h.train_args(
            trainer, ws["data"], train_dir, ws["clip"], "OPTIM.MAX_EPOCH", epochs,
            "DATASET.SUBSAMPLE_CLASSES", "base"))

    out = {"train_dir": train_dir, "new_dir": new_dir}
    out["train"] = train(TRAIN_EPOCHS)
    if out["train"].returncode != 0:
        return out
    out["train_log"] = h.read_log(os.path.join(train_dir, "log.txt"))
    out["resume"] = train(RESUME_EPOCHS)
    if out["resume"].returncode != 0:
        return out
    out["resume_log"] = h.read_log(h.log_paths(train_dir)[-1])
    out["eval"] = h.run_train_py(h.train_args(
        trainer, ws["data"], new_dir, ws["clip"], "DATASET.SUBSAMPLE_CLASSES", "new",
        flags=["--eval-only", "--model-dir", train_dir, "--load-epoch", RESUME_EPOCHS]))
    if out["eval"].returncode == 0:
        out["eval_log"] = h.read_log(os.path.join(new_dir, "log.txt"))
    return out


def zero_shot_eval(ws, trainer):
    new_dir = run_dir(ws["output"], "test_new", trainer)
    proc = h.run_train_py(h.train_args(trainer, ws["data"], new_dir, ws["clip"],
                                       "DATASET.SUBSAMPLE_CLASSES", "new",
                                       flags=["--eval-only"]))
    out = {"new_dir": new_dir, "eval": proc}
    if proc.returncode == 0:
        out["eval_log"] = h.read_log(os.path.join(new_dir, "log.txt"))
    return out


def tiny_yaml(trainer, path):
    """The shipped YAML of ``trainer`` shrunk to the tiny CLIP, written to ``path``."""
    with open(os.path.join(h.REPO, h.TRAINER_CONFIGS[trainer])) as f:
        cfg = yaml.safe_load(f)
    opts = h.COMMON_OPTS + h.TRAINER_OPTS[trainer] + ["OPTIM.MAX_EPOCH", "2"]
    for key, value in zip(opts[0::2], opts[1::2]):
        if key.startswith("DATASET.") or key == "MODEL.BACKBONE.NAME":
            continue  # the scripts set the shots; BACKBONE sets the model
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value) if not value.startswith("(") else value
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return str(path)


def script_run(ws, method):
    trainer = SCRIPT_METHODS[method]
    cfg = tiny_yaml(trainer, os.path.join(ws["root"], "tiny_{}.yaml".format(method)))
    env = h.subprocess_env(DATA=ws["data"], OUTPUT=ws["script_output"], CFG=cfg,
                           SHOTS=SHOTS, BACKBONE=ws["clip"], OPTS="DATALOADER.NUM_WORKERS 0",
                           **h.script_python())
    proc = subprocess.run(["bash", "scripts/{}/base2new.sh".format(method), "caltech101", "1"],
                          cwd=h.REPO, env=env, capture_output=True, text=True, timeout=600)
    dirs = {phase: os.path.join(ws["script_output"], "base2new", phase, "caltech101",
                                "shots_{}".format(SHOTS), trainer, "tiny_" + method, "seed1")
            for phase in ("train_base", "test_new")}
    return {"proc": proc, "dirs": dirs, "trainer": trainer, "cfg": "tiny_" + method}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_clip_path):
    root = tmp_path_factory.mktemp("e2e")
    dataset = write_dataset(root / "data", "Caltech101", n_classes=4)
    return {"root": str(root), "data": str(root / "data"), "dataset": dataset,
            "clip": tiny_clip_path, "output": str(root / "output"),
            "script_output": str(root / "script_output")}


@pytest.fixture(scope="module")
def runs(workspace, request):
    """Every run the selected tests of this module need, two processes at a
    time (2 CPU cores)."""
    everything = set(h.TRAINABLE_TRAINERS + h.ZERO_SHOT_TRAINERS) | set(SCRIPT_METHODS)
    trainers = h.selected(request, "trainer") or everything - SLOW
    methods = h.selected(request, "method") or everything - SLOW
    jobs = {}
    # Longest jobs first (3, 2, then 1 train.py runs), so that the two workers
    # finish together.
    for trainer in h.TRAINABLE_TRAINERS:
        if trainer in trainers:
            jobs[trainer] = lambda t=trainer: trainable_chain(workspace, t)
    for method in SCRIPT_METHODS:
        if method in methods:
            jobs["script:" + method] = lambda m=method: script_run(workspace, m)
    for trainer in h.ZERO_SHOT_TRAINERS:
        if trainer in trainers:
            jobs[trainer] = lambda t=trainer: zero_shot_eval(workspace, t)
    return h.run_all(jobs, workers=2)


def get_run(runs, name, *steps):
    """The result of job ``name``; fail clearly if it or one of ``steps`` failed."""
    result = runs[name]
    if isinstance(result, Exception):
        pytest.fail("{} did not run: {!r}".format(name, result))
    for step in steps:
        proc = result.get(step)
        if proc is None:
            pytest.fail("{}: an earlier step failed, '{}' did not run".format(name, step))
        assert proc.returncode == 0, "{} {}: {}".format(name, step, h.describe(proc))
        assert "Traceback" not in proc.stderr, proc.stderr
    return result


# ------------------------------------------------------------ trainable ones

@pytest.mark.parametrize("trainer", TRAINABLE)
def test_training_loss_decreases(runs, trainer):
    result = get_run(runs, trainer, "train")
    means = h.epoch_mean_losses(result["train_log"])
    assert sorted(means) == list(range(1, TRAIN_EPOCHS + 1)), means
    # Every iteration printed (TRAIN.PRINT_FREQ 1): 2 base classes x 4 shots.
    batch = int(dict(zip(h.TRAINER_OPTS[trainer][0::2], h.TRAINER_OPTS[trainer][1::2]))
                ["DATALOADER.TRAIN_X.BATCH_SIZE"])
    assert len(h.progress(result["train_log"])) == TRAIN_EPOCHS * (2 * SHOTS // batch)
    assert means[TRAIN_EPOCHS] < means[1], means


@pytest.mark.parametrize("trainer", TRAINABLE)
def test_training_writes_checkpoint_and_tests(runs, workspace, trainer):
    result = get_run(runs, trainer, "train")
    folder = os.path.join(result["train_dir"], "prompt_learner")
    path = os.path.join(folder, "model.pth.tar-{}".format(TRAIN_EPOCHS))
    assert os.path.isfile(path), sorted(os.listdir(folder))
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == TRAIN_EPOCHS
    assert checkpoint["state_dict"] and all(
        isinstance(v, torch.Tensor) for v in checkpoint["state_dict"].values())
    assert "Checkpoint saved to {}".format(path) in result["train_log"]
    assert h.ends_with_evaluator_block(result["train_log"]), result["train_log"][-800:]
    total = h.evaluator_block(result["train_log"])[0]
    assert total == 2 * workspace["dataset"].counts["test"]  # 2 base classes


@pytest.mark.parametrize("trainer", TRAINABLE)
def test_resume_continues_from_checkpoint(runs, trainer):
    result = get_run(runs, trainer, "train", "resume")
    log = result["resume_log"]
    assert "Found checkpoint at {}".format(result["train_dir"]) in log
    assert "Previous epoch: {}".format(TRAIN_EPOCHS) in log
    assert "No checkpoint found, train from scratch" not in log
    epochs = {epoch for epoch, _, _ in h.progress(log)}
    assert epochs == set(range(TRAIN_EPOCHS + 1, RESUME_EPOCHS + 1)), epochs
    assert "epoch [{}/{}] batch [1/".format(RESUME_EPOCHS, RESUME_EPOCHS) in log
    assert os.path.isfile(os.path.join(result["train_dir"], "prompt_learner",
                                       "model.pth.tar-{}".format(RESUME_EPOCHS)))
    # The resumed model is the trained one: its loss is below the first epoch's.
    first = h.epoch_mean_losses(result["train_log"])[1]
    assert h.epoch_mean_losses(log)[RESUME_EPOCHS] < first
    # The first log is kept; the resumed run wrote a timestamped one.
    assert len(h.log_paths(result["train_dir"])) == 2
    assert h.ends_with_evaluator_block(log)


@pytest.mark.parametrize("trainer", TRAINABLE)
def test_eval_only_on_new_classes(runs, workspace, trainer):
    result = get_run(runs, trainer, "train", "resume", "eval")
    log = result["eval_log"]
    checkpoint = os.path.join(result["train_dir"], "prompt_learner",
                              "model.pth.tar-{}".format(RESUME_EPOCHS))
    assert checkpoint in log
    assert "epoch [" not in log  # nothing trained
    assert h.ends_with_evaluator_block(log, allow_elapsed=False), log[-800:]
    total, correct, acc, err, f1 = h.evaluator_block(log)
    assert total == 2 * workspace["dataset"].counts["test"]  # 2 new classes
    assert acc == pytest.approx(100.0 * correct / total, abs=0.05)
    assert acc + err == pytest.approx(100.0, abs=0.11)
    assert 0.0 <= f1 <= 100.0
    assert not os.path.exists(os.path.join(result["new_dir"], "prompt_learner"))


# ------------------------------------------------------------ zero-shot ones

@pytest.mark.parametrize("trainer", ZERO_SHOT)
def test_zero_shot_eval_only(runs, workspace, trainer):
    result = get_run(runs, trainer, "eval")
    log = result["eval_log"]
    assert "load_model() is skipped" in log
    assert "epoch [" not in log
    assert h.ends_with_evaluator_block(log, allow_elapsed=False), log[-800:]
    total, correct, acc, _, _ = h.evaluator_block(log)
    assert total == 2 * workspace["dataset"].counts["test"]
    assert acc == pytest.approx(100.0 * correct / total, abs=0.05)
    if trainer == "ZeroshotCLIP2":
        assert "Prompt ensembling" in log
    else:
        assert "Prompts: ['a photo of a" in log


# ------------------------------------------------------------ run scripts

TABLE_ROW = re.compile(r"^caltech101\s+(\d+\.\d\d) ± \d+\.\d\d\s+(\d+\.\d\d) ± \d+\.\d\d"
                       r"\s+(\d+\.\d\d)\s+1\s*$", re.M)


@pytest.mark.parametrize("method", h.params(sorted(SCRIPT_METHODS), SLOW))
def test_base2new_script_prints_table_of_its_logs(runs, method):
    result = runs["script:" + method]
    if isinstance(result, Exception):
        pytest.fail("script did not run: {!r}".format(result))
    proc = result["proc"]
    assert proc.returncode == 0, h.describe(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    base_log, base = h.results.run_result(result["dirs"]["train_base"])
    novel_log, novel = h.results.run_result(result["dirs"]["test_new"])
    assert base is not None and novel is not None, (base_log, novel_log)
    assert os.path.isfile(os.path.join(result["dirs"]["train_base"], "prompt_learner",
                                       "model.pth.tar-2"))
    assert "Base-to-novel: {} / {} / {} shots".format(
        result["trainer"], result["cfg"], SHOTS) in proc.stdout
    rows = TABLE_ROW.findall(proc.stdout)
    assert len(rows) == 1, proc.stdout[-2000:]
    b, n, hm = map(float, rows[0])
    assert b == pytest.approx(base, abs=0.005)
    assert n == pytest.approx(novel, abs=0.005)
    expected_hm = 2 * base * novel / (base + novel) if base + novel else 0.0
    assert hm == pytest.approx(expected_hm, abs=0.005)
    # The test run loaded the train run's final checkpoint.
    assert "model.pth.tar-2" in h.read_log(novel_log)


def test_results_py_on_real_logs(runs, workspace):
    """results.py (CSV, then the side-by-side table) on the output tree of the
    train.py runs above."""
    expected = {}
    for trainer in h.TRAINABLE_TRAINERS + h.ZERO_SHOT_TRAINERS:
        if trainer not in runs:
            continue  # in the slow set
        result = runs[trainer]
        if isinstance(result, Exception) or "eval_log" not in result:
            pytest.fail("{} did not finish".format(trainer))
        base = (h.evaluator_block(result["resume_log"])[2] if "resume_log" in result
                else None)
        novel = h.evaluator_block(result["eval_log"])[2]
        expected[trainer] = (base, novel)
    assert {"CoOp", "PromptSRC", "ZeroshotCLIP"} <= set(expected)
    proc = subprocess.run([sys.executable, "scripts/results.py",
                           os.path.join(workspace["output"], "base2new"), "--format", "csv"],
                          cwd=h.REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, h.describe(proc)
    rows = [r for r in csv.DictReader(io.StringIO(proc.stdout)) if r["dataset"] == "caltech101"]
    got = {r["trainer"]: r for r in rows}
    assert sorted(got) == sorted(expected)
    for trainer, (base, novel) in expected.items():
        row = got[trainer]
        assert (row["cfg"], row["shots"], row["seeds"]) == (CFG_NAME, str(SHOTS), "1")
        assert float(row["novel"]) == pytest.approx(novel, abs=0.005)
        if base is None:
            assert row["base"] == "" and row["hm"] == ""
        else:
            assert float(row["base"]) == pytest.approx(base, abs=0.005)
            hm = 2 * base * novel / (base + novel) if base + novel else 0.0
            assert float(row["hm"]) == pytest.approx(hm, abs=0.005)
    # The default table puts the methods side by side on caltech101.
    table = subprocess.run([sys.executable, "scripts/results.py",
                            os.path.join(workspace["output"], "base2new")],
                           cwd=h.REPO, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, h.describe(table)
    block = table.stdout.split("Base-to-novel: caltech101", 1)[1].split("Base-to-novel:")[0]
    for trainer in expected:
        assert any(line.startswith("{} / {} / {} shots".format(trainer, CFG_NAME, SHOTS))
                   for line in block.splitlines()), table.stdout
