"""The torchrun layer of the trainers (:mod:`clipwb.engine.distributed_trainer`),
on the built-in engine and on real Dassl (when it imports).

In process: with ``RANK=1`` the engine's ``save_model`` (checkpoints and the
``model-best`` copy) and ``init_writer`` write nothing, with ``RANK=0`` they
write what the engine writes. With two gloo processes: the gathered
evaluator gives every rank the evaluator result of one process fed all the
batches, only rank 0 saves the confusion matrix, and after
:func:`share_random_states` both ranks draw rank 0's next numbers.
"""
import functools
import glob
import os
import random

import numpy as np
import pytest
import torch

from clipwb.engine.distributed_trainer import (DistributedTrainer, GatheredEvaluator,
                                               share_random_states)
from tests import distributed_kit as dk


def engine_trainer_base(engine):
    if engine == "builtin":
        from clipwb.engine.builtin.trainer import TrainerBase
    else:
        pytest.importorskip("dassl")
        from dassl.engine.trainer import TrainerBase
    return TrainerBase


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_rank_zero_alone_writes_checkpoints_and_tensorboard(engine, tmp_path, monkeypatch):
    class Trainer(DistributedTrainer, engine_trainer_base(engine)):
        pass

    monkeypatch.setenv("WORLD_SIZE", "2")  # (no process group: the barrier is a no-op)
    written = {}
    for index in (1, 0):
        monkeypatch.setenv("RANK", str(index))
        trainer = Trainer()
        model = torch.nn.Linear(2, 1)
        trainer.register_model("prompt_learner", model,
                               torch.optim.SGD(model.parameters(), lr=0.1), None)
        out = tmp_path / "rank{}".format(index)
        trainer.save_model(0, str(out), is_best=True)
        trainer.init_writer(str(out / "tensorboard"))
        trainer.write_scalar("train/loss", 1.0, 0)
        trainer.close_writer()
        written[index] = sorted(os.path.relpath(p, out) for p in glob.glob(
            str(out / "**" / "*"), recursive=True) if os.path.isfile(p))
    assert written[1] == []
    assert [p for p in written[0] if not p.startswith("tensorboard")] == [
        "prompt_learner/checkpoint", "prompt_learner/model-best.pth.tar",
        "prompt_learner/model.pth.tar-1"]
    assert len([p for p in written[0] if p.startswith("tensorboard/events.")]) == 1


# 5 test batches of 2 images, 3 classes: the scores and labels
OUTPUTS = [torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]),
           torch.tensor([[0.0, 1.0, 5.0], [4.0, 1.0, 0.0]]),
           torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
           torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]]),
           torch.tensor([[0.0, 0.0, 9.0], [0.0, 7.0, 0.0]])]
LABELS = [torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0, 2]),
          torch.tensor([2, 0]), torch.tensor([2, 0])]
# argmax 0,1 | 2,0 | 0,2 | 1,0 | 2,1 against 0,1 | 1,0 | 0,2 | 2,0 | 2,0: 7 of 10


def _evaluator(output_dir):
    from clipwb.engine.builtin.config import get_cfg_default
    from clipwb.engine.builtin.evaluation import Classification

    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = output_dir
    cfg.TEST.COMPUTE_CMAT = True
    cfg.freeze()
    return Classification(cfg)


def _rank_work(tmp, index):
    out = os.path.join(tmp, "rank{}".format(index))
    os.makedirs(out)
    evaluator = GatheredEvaluator(_evaluator(out))
    evaluator.reset()
    for batch in range(index, len(OUTPUTS), 2):  # this rank's test batches
        evaluator.process(OUTPUTS[batch], LABELS[batch])
    result = dict(evaluator.evaluate())
    # rank 0 alone drew the few-shot split (say)
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    if index == 0:
        random.random(), np.random.rand(), torch.rand(2)
    share_random_states()
    draws = (random.random(), float(np.random.rand()), torch.rand(2).tolist())
    return result, sorted(os.listdir(out)), draws


def test_two_ranks_gather_the_evaluation_and_share_rank_zeros_random_states(tmp_path):
    got = dk.on_gloo_ranks(functools.partial(_rank_work, str(tmp_path)))
    one = _evaluator(str(tmp_path))  # one process, every batch in order
    for output, label in zip(OUTPUTS, LABELS):
        one.process(output, label)
    expected = dict(one.evaluate())
    assert expected["accuracy"] == pytest.approx(70.0)
    (result0, files0, draws0), (result1, files1, draws1) = got
    assert result0 == result1 == expected
    assert files0 == ["cmat.pt"] and files1 == []
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(2)
    rank0_next = (random.random(), float(np.random.rand()), torch.rand(2).tolist())
    assert draws0 == draws1 == rank0_next
