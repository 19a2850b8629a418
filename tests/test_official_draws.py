"""Our initial learnable parameters equal the official code's, bit for bit.

``tests/data/official_initial_draws.json`` holds fingerprints recorded from
the official CoOp, MaPLe and PromptSRC repositories' trainers (and the
other baselines', e.g. DePT's four ExtrasLinearProbe pairings: prompts and
head, KgCoOp's never-trained tensors left out)
(``benchmarks/official_parity/record_draws.py``: the toy world laid out as
Caltech101, base classes, the toy CLIP file, each trainer's toy config, seed
1, PREC fp32 and fp16). Each test builds our trainer the same way and
compares every learnable tensor (dtype, shape, SHA-256 of its bytes) and the
state of torch's generator after the build, which fixes the data order of
the steps that follow.
"""
import importlib.util
import json
import os

import pytest

from benchmarks.official_parity.record_draws import (PREC_KEYS, record_key, train_arguments,
                                                     trainer_fingerprints)
from benchmarks.official_parity.toy_caltech import write_toy_caltech

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = os.path.join(REPO, "tests", "data", "official_initial_draws.json")

with open(RECORDS) as f:
    OFFICIAL = json.load(f)


def _train_module():
    spec = importlib.util.spec_from_file_location("clipwb_train_script",
                                                  os.path.join(REPO, "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def caltech_root(toy_data, tmp_path_factory):
    return write_toy_caltech(str(tmp_path_factory.mktemp("toy_caltech")), toy_root=toy_data)


def build_ours(trainer_name, prec, seed, data, output_dir, monkeypatch):
    """Our trainer built as train.py builds it (seed set, then build_trainer)."""
    from clipwb.engine import build_trainer, set_random_seed

    if prec == "fp16":
        monkeypatch.setenv("PREC_ON_CPU", "1")
    train = _train_module()
    args = train.build_parser().parse_args(train_arguments(
        trainer_name, prec, seed, data, output_dir,
        os.path.join(REPO, "configs", "datasets", "caltech101.yaml")))
    cfg = train.setup_cfg(args)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


@pytest.mark.parametrize("key", sorted(OFFICIAL))
def test_initial_parameters_equal_the_official_code(key, caltech_root, tmp_path, monkeypatch):
    trainer_name, prec, seed = key.split("/")
    assert trainer_name in PREC_KEYS and record_key(trainer_name, prec, int(seed[4:])) == key
    trainer = build_ours(trainer_name, prec, int(seed[4:]), caltech_root, str(tmp_path),
                         monkeypatch)
    ours = trainer_fingerprints(trainer)
    official = OFFICIAL[key]
    assert sorted(ours["params"]) == sorted(official["params"])
    for name, expected in official["params"].items():
        got = ours["params"][name]
        assert (got["dtype"], got["shape"]) == (expected["dtype"], expected["shape"]), name
        assert got["sha256"] == expected["sha256"], (name, got["head"], expected["head"])
    assert ours["torch_rng_sha256"] == official["torch_rng_sha256"]


def test_the_records_cover_every_baseline_in_both_precisions():
    covered = {tuple(key.split("/")[:2]) for key in OFFICIAL}
    assert covered == {(t, p) for t in PREC_KEYS for p in ("fp32", "fp16")}
