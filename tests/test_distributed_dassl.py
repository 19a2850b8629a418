"""torchrun on real Dassl: two processes give the run of one.

Skipped unless ``dassl`` imports (see docs/ENGINE.md to install it, then run
this file with that interpreter). The project's trainers subclass real
Dassl's ``TrainerX`` with the torchrun layer
(:class:`clipwb.engine.distributed_trainer.DistributedTrainer`) ahead of it.
End to end (slow), CoOp and DiSa train on a tiny Caltech101 with the tiny
CLIP on real Dassl once with ``python train.py`` and once with ``torchrun
--nproc_per_node 2``, each run on its own fresh copy of the data (so each
writes its few-shot split cache): every logged per-iteration loss, the last
checkpoint's weights and the evaluator block are the single-process run's,
and rank 0 alone writes the log, tensorboard and checkpoints. In process,
real Dassl's loaders give each rank its slice of the global batch
(tests/test_distributed_trainer.py checks real Dassl's checkpoint and
tensorboard writes on rank 1).
"""
import glob
import os

import pytest

pytest.importorskip("dassl")

from clipwb.engine.distributed_trainer import DistributedTrainer  # noqa: E402
from tests import distributed_kit as dk  # noqa: E402
from tests import e2e_helpers as h  # noqa: E402
from tests.dataset_layouts import write_dataset  # noqa: E402

DASSL = h.subprocess_env(DASSL_BACKEND="dassl")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_clip_path):
    return {"tmp": tmp_path_factory.mktemp("ddp_dassl"), "clip": tiny_clip_path}


def one_and_two(runs, trainer):
    def args_for(out):
        data = out + "_data"  # a fresh copy: the run writes its own split cache
        write_dataset(data, "Caltech101", n_classes=4)
        # one test image per batch: the 4 test batches are shared by the 2 ranks
        return h.train_args(trainer, data, out, runs["clip"], "OPTIM.MAX_EPOCH", dk.EPOCHS,
                            "DATASET.SUBSAMPLE_CLASSES", "base",
                            "DATALOADER.TEST.BATCH_SIZE", 1)

    return dk.one_and_two(runs, trainer, args_for, env=DASSL)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["CoOp", "DiSa"])
def test_two_processes_on_real_dassl_give_the_run_of_one(runs, trainer):
    r = one_and_two(runs, trainer)
    one_log, two_log = dk.assert_same_run(r, steps=dk.EPOCHS * 8 // 4)
    assert "engine:  real Dassl" in one_log and "engine:  real Dassl" in two_log
    assert "Running on 2 processes (torchrun, gloo backend)" in two_log
    assert h.evaluator_block(two_log)[0] == 4  # 4 test images, 2 per rank
    # rank 0 alone printed and logged: one evaluation, one line per step
    out = r["two"].stdout
    assert out.count("Evaluate on the *test* set") == 1 and out.count("=> result") == 1
    assert two_log.count("Evaluate on the *test* set") == 1
    # ... wrote one tensorboard file, and each split cache once
    for run_dir in (r["one_dir"], r["two_dir"]):
        assert len(glob.glob(os.path.join(run_dir, "tensorboard", "events.*"))) == 1
        caches = glob.glob(os.path.join(run_dir + "_data", "*", "split_fewshot", "*.pkl"))
        assert [os.path.basename(c) for c in caches] == ["shot_4-seed_1.pkl"]
    with open(glob.glob(os.path.join(r["two_dir"] + "_data", "*", "split_fewshot",
                                     "*.pkl"))[0], "rb") as f:
        assert b"dassl.data.datasets" in f.read()  # real Dassl's Datum


def test_real_dassl_loaders_give_each_rank_its_slice_of_the_global_batch(
        tmp_path, tiny_clip_path, monkeypatch):
    """Real Dassl's ``SimpleTrainer.build_data_loader`` under the torchrun
    layer: rank r's batches are the contiguous halves of the one-process
    run's batches (same seed), in order."""
    import train
    from clipwb.engine import BACKEND, SimpleTrainer, set_random_seed

    if BACKEND != "dassl":
        pytest.skip("this process's engine is not real Dassl (DASSL_BACKEND)")
    data = str(tmp_path / "data")
    write_dataset(data, "Caltech101", n_classes=4)
    cfg = train.setup_cfg(train.build_parser().parse_args([str(a) for a in h.train_args(
        "CoOp", data, str(tmp_path / "out"), tiny_clip_path, "DATASET.SUBSAMPLE_CLASSES",
        "base")]))

    class DataOnly(DistributedTrainer, SimpleTrainer):
        def build_model(self):
            pass

    images = {}
    for world, index in ((1, 0), (2, 0), (2, 1)):
        monkeypatch.setenv("WORLD_SIZE", str(world))  # (no process group: no barrier)
        monkeypatch.setenv("RANK", str(index))
        loader = DataOnly(cfg).train_loader_x
        set_random_seed(1)
        images[world, index] = [list(batch["impath"]) for batch in loader]
    assert len(images[1, 0]) == 2 and all(len(b) == 4 for b in images[1, 0])
    assert [a + b for a, b in zip(images[2, 0], images[2, 1])] == images[1, 0]
