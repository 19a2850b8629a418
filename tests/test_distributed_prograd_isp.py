"""ProGrad, ISP and the zero-shot CLIPs on two processes (torchrun, gloo on
the CPU) equal one process.

ProGrad projects the gradient of its CE loss against that of its KL loss:
both gradients are averaged over the ranks before the projection. ISP
normalises its sample-probing weights over the batch: the ranks gather the
difficulties of the global batch first. In process (2 forked gloo ranks, a
few seconds): the new reductions of :mod:`clipwb.engine.distributed`, and
ProGrad's projection and ISP's probe weights on two half batches against the
one-process value of the whole batch. End to end (slow): every logged loss
term, the last checkpoint and the evaluator block of a 2-process run are the
1-process run's; the zero-shot CLIPs evaluate to the 1-process block.
"""
import os
import types

import pytest
import torch
import torch.nn.functional as F

from clipwb.engine import distributed
from clipwb.trainers.isp.losses import probe_weights, weighted_cross_entropy
from clipwb.trainers.isp.trainer import ISP
from clipwb.trainers.kit.gradient_projection import aligned_gradients
from tests import distributed_kit as dk
from tests import e2e_helpers as h


# -- in process: two gloo ranks ------------------------------------------------------------
def _rank_work(index):
    return {"reductions": _reductions(index), "prograd": _prograd_rank(index),
            "linear": _isp_probe_rank(index, "linear"),
            "softmax": _isp_probe_rank(index, "softmax")}


@pytest.fixture(scope="module")
def ranks():
    """Every check below on 2 forked gloo ranks at once: each rank's results,
    by rank."""
    return dk.on_gloo_ranks(_rank_work)


def _reductions(index):
    grads = [(index + 1) * torch.tensor([1.0, 2.0, 3.0]), None,
             torch.full((2, 2), float(index), dtype=torch.float16)]
    same = distributed.average_tensors(grads)
    # rank r holds the samples 2r, 2r + 1 of the global batch [0, 1, 2, 3]
    mine = torch.tensor([2.0 * index, 2.0 * index + 1])
    everyone = distributed.gather_batch(mine)
    return (same is grads, grads[0].tolist(), grads[1], grads[2].dtype, grads[2].tolist(),
            everyone.tolist(), distributed.rank_share(everyone).tolist())


def test_gloo_ranks_average_tensors_and_gather_the_global_batch(ranks):
    for index, got in enumerate(r["reductions"] for r in ranks):
        in_place, first, missing, dtype, half, everyone, share = got
        assert in_place and first == [1.5, 3.0, 4.5] and missing is None
        assert dtype == torch.float16 and half == [[0.5, 0.5], [0.5, 0.5]]
        assert everyone == [0.0, 1.0, 2.0, 3.0]
        assert share == [2.0 * index, 2.0 * index + 1]
    # one process: nothing to reduce, the whole batch is this rank's share
    t = torch.arange(4.0)
    assert distributed.gather_batch(t) is t
    assert torch.equal(distributed.rank_share(t), t)
    assert distributed.rank_share(t, index=1, world=2).tolist() == [2.0, 3.0]


# ProGrad: per-sample task rows a_i and general rows b_i of linear losses
# L = mean_i a_i . w, L_gen = mean_i b_i . w, so g = mean a_i, g_gen = mean b_i.
# Rank 0's half does not conflict (g . g_gen0 = 1 > 0), rank 1's does; the
# global g = [1, 0], g_gen = [-1, 1] conflict: G = g - (g . u) u = [0.5, 0.5].
TASK_ROWS = torch.tensor([[1.0, 0.0]] * 4)
GENERAL_ROWS = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-3.0, 1.0], [-3.0, 1.0]])


def _projected(rows, general_rows):
    w = torch.nn.Parameter(torch.zeros(2))
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    count = aligned_gradients([w, frozen], (rows @ w).mean(), (general_rows @ w).mean())
    return w.grad, frozen.grad, count


def _prograd_rank(index):
    grad, frozen, count = _projected(TASK_ROWS[2 * index:2 * index + 2],
                                     GENERAL_ROWS[2 * index:2 * index + 2])
    return grad.tolist(), frozen, count


def test_prograd_projects_the_global_batchs_gradients_on_two_ranks(ranks):
    whole, _, count = _projected(TASK_ROWS, GENERAL_ROWS)
    assert count == 1 and torch.allclose(whole, torch.tensor([0.5, 0.5]))
    for grad, frozen, count in (r["prograd"] for r in ranks):
        assert count == 1 and frozen is None
        assert grad == pytest.approx([0.5, 0.5], abs=1e-6)
    # projecting each half then averaging (no reduction first) is not the update
    halves = [_projected(TASK_ROWS[i:i + 2], GENERAL_ROWS[i:i + 2])[0] for i in (0, 2)]
    assert torch.allclose((halves[0] + halves[1]) / 2, torch.tensor([0.55, 0.15]))


PROBE_LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1],
                             [-1.0, 3.0, 0.0]])
FROZEN_LOGITS = torch.tensor([[3.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0],
                              [0.5, 0.5, 0.0]])
PROBE_LABELS = torch.tensor([0, 2, 1, 1])


def _probe_node(weighting):
    return types.SimpleNamespace(PROBE=True, PROBE_SOURCE="frozen", PROBE_WEIGHTING=weighting,
                                 PROBE_ALPHA=2.0, PROBE_TEMPERATURE=0.5)


def _isp_probe_rank(index, weighting):
    # ISP.probe itself, on this rank's slice (a stand-in for the trainer)
    trainer = types.SimpleNamespace(method_cfg=_probe_node(weighting), _batch_index=None)
    part = slice(2 * index, 2 * index + 2)
    weights = ISP.probe(trainer, PROBE_LABELS[part], PROBE_LOGITS[part], FROZEN_LOGITS[part])
    loss = weighted_cross_entropy(PROBE_LOGITS[part], PROBE_LABELS[part],
                                  distributed.rank_share(weights))
    return weights.tolist(), loss.item()


@pytest.mark.parametrize("weighting", ["linear", "softmax"])
def test_isp_probe_weights_are_the_global_batchs_on_two_ranks(ranks, weighting):
    node = _probe_node(weighting)
    d = 1 - F.softmax(FROZEN_LOGITS, dim=1).gather(1, PROBE_LABELS.view(-1, 1)).squeeze(1)
    if weighting == "linear":
        expected = (1 + 2.0 * d) / (1 + 2.0 * d).mean()
    else:
        expected = 4 * torch.exp(d / 0.5) / torch.exp(d / 0.5).sum()
    whole = ISP.probe(types.SimpleNamespace(method_cfg=node, _batch_index=None),
                      PROBE_LABELS, PROBE_LOGITS, FROZEN_LOGITS)
    assert torch.allclose(whole, expected, atol=1e-6)
    loss = (expected * F.cross_entropy(PROBE_LOGITS, PROBE_LABELS, reduction="none")).mean()
    (weights0, loss0), (weights1, loss1) = (r[weighting] for r in ranks)
    assert weights0 == weights1 == pytest.approx(expected.tolist(), abs=1e-6)
    # the ranks' mean loss (what is logged, and whose gradient is averaged)
    assert (loss0 + loss1) / 2 == pytest.approx(loss.item(), abs=1e-6)
    # weights normalised over each half alone would not be the global batch's
    halves = torch.cat([probe_weights(d[:2], weighting, 2.0, 0.5),
                        probe_weights(d[2:], weighting, 2.0, 0.5)])
    assert not torch.allclose(halves, expected, atol=1e-3)


# -- end to end: python train.py vs torchrun --nproc_per_node 2 (slow) ---------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_path):
    return dk.toy_world(tmp_path_factory, tiny_clip_path, "ddp_prograd_isp")


# ProGrad is not in the e2e tables: its toy config (32 px) with CoOp's small
# options; one test image per batch, so that the 2 ranks share the test batches
PROGRAD_CONFIG = "configs/trainers/ProGrad/toy.yaml"
PROGRAD_OPTS = ["DATALOADER.TRAIN_X.BATCH_SIZE", 4, "OPTIM.LR", 0.1, "OPTIM.WARMUP_EPOCH", 0]
SPLIT = ["OPTIM.MAX_EPOCH", dk.EPOCHS, "DATASET.SUBSAMPLE_CLASSES", "base",
         "DATALOADER.TEST.BATCH_SIZE", 1]
# ISP's IVLP prompts under the official fp32 are rounded to float16 in every
# forward pass: the 2-process gradient (a mean of two half-batch means)
# differs in its last float32 bits, and a rounding that flips moves a weight
# by a float16 step (as IVLP's and MaPLe's in tests/test_distributed.py)
ISP_SPLIT = SPLIT + ["TRAINER.ISP.PREC", "fp32_exact"]
RUNS = {
    "ProGrad": lambda w, out: (
        ["--root", w["data"], "--seed", 1, "--trainer", "ProGrad",
         "--dataset-config-file", "configs/datasets/caltech101.yaml",
         "--config-file", PROGRAD_CONFIG, "--output-dir", out,
         "MODEL.BACKBONE.NAME", w["clip"]] + h.COMMON_OPTS + PROGRAD_OPTS + SPLIT),
    "ISP": lambda w, out: h.train_args("ISP", w["data"], out, w["clip"], *ISP_SPLIT),
    # the lite recipe's difficulty table, and the softmax weighting
    "ISP-once-softmax": lambda w, out: h.train_args(
        "ISP", w["data"], out, w["clip"], *ISP_SPLIT, "TRAINER.ISP.PROBE_SOURCE", "frozen_once",
        "TRAINER.ISP.PROBE_WEIGHTING", "softmax", "TRAINER.ISP.PROBE_TEMPERATURE", 0.2),
    "ZeroshotCLIP": lambda w, out: h.train_args(
        "ZeroshotCLIP", w["data"], out, w["clip"], "DATALOADER.TEST.BATCH_SIZE", 1,
        flags=["--eval-only"]),
    # without --eval-only: train() evaluates the frozen model
    "ZeroshotCLIP2": lambda w, out: h.train_args(
        "ZeroshotCLIP2", w["data"], out, w["clip"], "DATALOADER.TEST.BATCH_SIZE", 1),
}


def one_and_two(world, name):
    return dk.one_and_two(world["runs"], name, lambda out: RUNS[name](world, out))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ProGrad", "ISP", "ISP-once-softmax"])
def test_two_processes_train_as_one(world, name):
    r = one_and_two(world, name)
    one_log, two_log = dk.assert_same_run(r, steps=dk.EPOCHS * 2)
    terms = dk.logged_terms(one_log)[0]
    if name == "ProGrad":  # the official terms
        assert {"xe_loss", "kl_loss", "acc"} <= set(terms)
    else:
        assert "probe_w_max" in terms
    # 8 base images, global batch 4; 4 test images
    assert h.evaluator_block(one_log)[0] == 4
    assert "global batch 4, 2 images per process" in two_log


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ZeroshotCLIP", "ZeroshotCLIP2"])
def test_zero_shot_clip_evaluates_on_two_processes_as_on_one(world, name):
    r = one_and_two(world, name)
    assert r["one"].returncode == 0, h.describe(r["one"])
    assert r["two"].returncode == 0, h.describe(r["two"])
    one_log = h.read_log(os.path.join(r["one_dir"], "log.txt"))
    two_log = h.read_log(os.path.join(r["two_dir"], "log.txt"))
    assert "Running on 2 processes (torchrun, gloo backend)" in two_log
    assert h.evaluator_block(two_log) == h.evaluator_block(one_log) is not None
    assert h.evaluator_block(one_log)[0] == 8  # 4 classes, 2 test images each
    assert r["two"].stdout.count("=> result") == 1  # rank 0 alone prints
