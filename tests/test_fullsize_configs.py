"""Full-size config check: every shipped ``configs/trainers/*/*.yaml`` (but the
toy ones) trained for two steps and tested at its backbone's real size.

Marked ``fullsize`` (outside the default set; ``python -m pytest -q -m
fullsize``): about 80 train.py runs of ViT-B/16- and ViT-L/14-sized models
on the CPU (``-k vit_l14``: the ViT-L/14 configs alone).
What each case runs and which keys it overrides: ``tests/fullsize_kit.py``.
The runs of the selected cases go two at a time through the tests' train
server (``tests/e2e_helpers.py``); GuiDG's step 2 runs after the step-1
experts it loads (the expert config of its backbone's case). The unmarked test
below (default set) checks that every YAML is a case the check can build.
"""
import glob
import math
import os
import shutil
import threading

import pytest
import torch

from benchmarks.backbones import BACKBONES, backbone_checkpoint
from clipwb import registration
from clipwb.engine import TRAINER_REGISTRY
from clipwb.engine.progress import parse_progress
from tests import e2e_helpers as h
from tests import fullsize_kit as fk
from tests.dataset_layouts import write_dataset
from tests.dg_layouts import write_domainbed

CASES = fk.find_cases()
CASE_IDS = [c.id for c in CASES]
#: a run of a ViT-B/16 case takes well under a minute on an idle core (ViT-L/14: a
#: few minutes under load)
RUN_TIMEOUT_S = 1800


def test_every_shipped_trainer_config_is_a_full_size_case():
    """Every YAML under configs/trainers/ but the toy ones is a case; each names a
    backbone with known real dimensions, a registered trainer (its folder),
    and the backbone's input size (so the case's images have the YAML's size)."""
    found = sorted(os.path.relpath(p, os.path.join(fk.REPO, "configs", "trainers"))
                   for p in glob.glob(fk.CONFIG_GLOB))
    folder_cases = [c.id for c in CASES if c.with_trainer is None]
    assert folder_cases == [f for f in found if not fk.is_toy_config(f)]
    assert len(folder_cases) >= 30
    assert {fk.DEFAULT_EXPERT_CONFIG, fk.LARGE_EXPERT_CONFIG} <= set(folder_cases)
    assert len(set(CASE_IDS)) == len(CASE_IDS)
    # every trainer of the project runs in at least one case
    project = list(registration.BASELINE_TRAINERS) + list(registration.PLUGIN_TRAINERS)
    assert sorted({c.trainer for c in CASES}) == sorted(project)
    registered = TRAINER_REGISTRY.registered_names()
    for case in CASES:
        assert case.trainer in registered, case.id
        assert case.backbone in BACKBONES, (case.id, case.backbone)
        side = case.dims["image_resolution"]
        assert case.input_size == (side, side), case.id
        assert 1 <= case.train_batch <= fk.MAX_TRAIN_BATCH
        assert fk.TEST_IMAGES <= case.cfg().DATALOADER.TEST.BATCH_SIZE, case.id


def test_every_large_config_is_its_twin_on_vit_l14():
    """Each ViT-L/14 config is its ViT-B/16 twin's text (ProGrad: RN50's) with
    only the backbone changed (an edit of the twin must be copied), every method
    folder has one, and loaded the two differ in that one key only."""
    large = fk.large_configs()
    assert {folder for folder, _, _ in large} == {
        os.path.basename(os.path.dirname(p)) for p in glob.glob(fk.CONFIG_GLOB)}
    shipped = sorted(os.path.relpath(p, os.path.join(fk.REPO, "configs", "trainers"))
                     for p in glob.glob(os.path.join(fk.REPO, "configs", "trainers", "*",
                                                     "vit_l14*.yaml")))
    assert shipped == sorted("{}/{}.yaml".format(f, n) for f, n, _ in large)
    for folder, name, twin in large:
        path = os.path.join(fk.REPO, "configs", "trainers", folder, name + ".yaml")
        with open(path) as f:
            assert f.read() == fk.large_config_text(folder, twin), path
        trainer = folder
        mine = fk.config_from_file(path, trainer, ())
        theirs = fk.config_from_file(os.path.join(os.path.dirname(path), twin + ".yaml"),
                                     trainer, ())
        assert mine.MODEL.BACKBONE.NAME == "ViT-L/14" and tuple(mine.INPUT.SIZE) == (224, 224)
        theirs.defrost()
        theirs.MODEL.BACKBONE.NAME = "ViT-L/14"
        assert mine == theirs, path


# -- the runs -------------------------------------------------------------------
class BackboneFiles:
    """Random-weight CLIPs of real size, each written once (float16) into one
    folder of the session, removed at its end."""

    def __init__(self, folder):
        self.folder = folder
        self._lock = threading.Lock()

    def path(self, name):
        with self._lock:
            return backbone_checkpoint(name, self.folder, half=True)


@pytest.fixture(scope="session")
def backbone_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fullsize_clip")
    yield BackboneFiles(str(folder))
    shutil.rmtree(str(folder), ignore_errors=True)  # about 1 GB


class Run:
    """One ``train.py`` call of a case and what it left."""

    def __init__(self, name, run_dir, proc):
        self.name, self.run_dir, self.proc = name, run_dir, proc
        log = os.path.join(run_dir, "log.txt")
        self.log = h.read_log(log) if os.path.isfile(log) else ""


def write_case_dataset(case, root):
    """The case's tiny dataset under ``root``; returns its dataset config file."""
    size = case.input_size[0]
    if case.dataset == "PACS":
        written = write_domainbed(root, "PACS", n_classes=fk.N_CLASSES,
                                  n_per_class=fk.DOMAINBED_IMAGES_PER_CLASS, image_size=size,
                                  domains=list(fk.DG_SOURCES) + [fk.DG_TARGET])
    else:
        written = write_dataset(root, case.dataset, n_classes=fk.N_CLASSES,
                                n_per_class=fk.COOP_IMAGES_PER_CLASS, image_size=size)
    return written.config_file


def domain_opts(sources, targets, pool):
    """The DG keys of scripts/guidg/dg.sh (Python list literals for yacs)."""
    return ["DATASET.SOURCE_DOMAINS", repr(list(sources)),
            "DATASET.TARGET_DOMAINS", repr(list(targets)), "DATASET.DG_TRAIN_POOL", pool]


def run_case(case, root, clip_path, expert_template=None):
    """Every ``train.py`` run of ``case`` in ``root`` (GuiDGExpert: one expert
    per source domain; GuiDG: step 2 with ``expert_template``)."""
    data = os.path.join(root, "data")
    dataset_config = write_case_dataset(case, data)
    if case.trainer == "GuiDGExpert":
        plans = [("expert_" + d, domain_opts([d], [d], "A")) for d in fk.DG_SOURCES]
    elif case.trainer == "GuiDG":
        plans = [("step2", domain_opts(fk.DG_SOURCES, [fk.DG_TARGET], "B")
                  + ["TRAINER.GUIDG.EXPERT_DIR", expert_template])]
    elif case.trainer in fk.DG_FINETUNE:  # a DG baseline alone
        plans = [("run", domain_opts(fk.DG_SOURCES, [fk.DG_TARGET], "B"))]
    else:
        plans = [("run", [])]
    runs = []
    for name, extra in plans:
        run_dir = os.path.join(root, name)
        proc = h.run_train_py(["--root", data, "--seed", 1, "--trainer", case.trainer,
                               "--dataset-config-file", dataset_config,
                               "--config-file", case.path, "--output-dir", run_dir]
                              + case.opts(clip_path) + extra, timeout=RUN_TIMEOUT_S)
        runs.append(Run(name, run_dir, proc))
        if proc.returncode != 0:
            break
    return runs


def expert_folder_template(root):
    return os.path.join(root, "expert_{domain}")


@pytest.fixture(scope="module")
def fullsize_runs(request, tmp_path_factory, backbone_files):
    """case id -> its runs (or the exception), for the cases selected here."""
    wanted = h.selected(request, "case_id")
    wanted |= {fk.case_by_id(CASES, c).expert_config for c in wanted
               if fk.case_by_id(CASES, c).trainer == "GuiDG"}  # step 2 loads their experts
    roots = {c: str(tmp_path_factory.mktemp("fullsize")) for c in sorted(wanted)}

    def job(case_id):
        case = fk.case_by_id(CASES, case_id)
        template = expert_folder_template(roots[case.expert_config]) \
            if case.trainer == "GuiDG" else None
        return lambda: run_case(case, roots[case_id], backbone_files.path(case.backbone),
                                template)

    first = [c for c in sorted(wanted) if fk.case_by_id(CASES, c).trainer != "GuiDG"]
    second = [c for c in sorted(wanted) if c not in first]
    results = h.run_all({c: job(c) for c in first})
    results.update(h.run_all({c: job(c) for c in second}))
    return results


def saved_dims(run_dir):
    """Every dimension of every tensor in the run's saved checkpoints."""
    dims = set()
    for folder, _, files in os.walk(run_dir):
        for name in files:
            if name.startswith("model") and ".pth.tar" in name:
                state = torch.load(os.path.join(folder, name), map_location="cpu",
                                   weights_only=False)["state_dict"]
                dims.update(d for t in state.values() if torch.is_tensor(t) for d in t.shape)
    return dims


def check_run(case, run):
    assert run.proc.returncode == 0, "{} {}: {}".format(case.id, run.name, h.describe(run.proc))
    # ProGrad logs the official xe_loss / kl_loss pair; it descends xe_loss
    log = run.log.replace(" xe_loss ", " loss ") if case.trainer == "ProGrad" else run.log
    steps = parse_progress(log)
    if case.zero_shot:  # nothing to train: train.py evaluates the frozen model
        assert steps == [] and "has no learnable weights" in run.log, (case.id, steps)
    else:
        assert [s[:4] for s in steps] == [(1, 1, b, fk.STEPS)
                                          for b in range(1, fk.STEPS + 1)], (case.id, steps)
    assert all(math.isfinite(s.loss) for s in steps), (case.id, run.name, steps)
    block = h.evaluator_block(run.log)
    assert block is not None and h.ends_with_evaluator_block(run.log), (case.id, run.name)
    total, correct, accuracy, error, _ = block
    assert total == fk.TEST_IMAGES and 0 <= correct <= total, block
    assert abs(accuracy + error - 100.0) < 0.15, block
    # the learnable weights saved are of the real size (text width 512, not the tiny 64)
    if not case.zero_shot:
        assert case.dims["transformer_width"] in saved_dims(run.run_dir), (case.id, run.name)
    # the YAML's half-precision mode runs as fp32 on the CPU, and the log says so
    prec, key = case.precision, case.precision_key
    if prec not in (None, "fp32"):
        assert "{} = {} runs as fp32 on the CPU".format(key, prec) in run.log, (case.id, prec)
    assert "precision fp32" in run.proc.stdout, run.proc.stdout[-2000:]


@pytest.mark.fullsize
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_config_trains_and_tests_at_full_size(case_id, fullsize_runs):
    case = fk.case_by_id(CASES, case_id)
    runs = fullsize_runs[case_id]
    if isinstance(runs, Exception):
        raise runs
    expected = len(fk.DG_SOURCES) if case.trainer == "GuiDGExpert" else 1
    assert len(runs) >= 1
    for run in runs:
        check_run(case, run)
    assert len(runs) == expected
