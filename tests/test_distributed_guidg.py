"""GuiDG's trainers on two processes (``torchrun``, gloo on the CPU) equal one.

End to end (slow), on the toy world (``ToyShapesDG``, the shipped toy CLIP,
the ``toy.yaml`` configs shortened): GuiDG step 2 (CLIPood baseline with
CMAttn's batch-mean weights; UEO baseline with WiSE-FT), the baselines
CLIPood, ERM + WiSE-FT, UEO + WiSE-FT and the step-1 expert (GuiDGExpert,
its last incomplete batch kept) log every per-iteration loss term of one
process (to 1e-5), its evaluator block and its last checkpoints; a killed
2-process GuiDG step-2 run resumes exactly (batch-stepped schedule, sampler
and BMA state).

In process (fast): the differentiable mean over the ranks and the step-2
loss on two gloo ranks give the one-process loss and gradients; the step-2
loader keeps this rank's slice of the domain-balanced batch; a global batch
or a kept last batch that does not split is one sentence.
"""
import os
import types

import pytest
import torch

from clipwb.engine import build_trainer, distributed
from clipwb.errors import ConfigError
from clipwb.trainers.guidg.cmattn import CMAttn
from clipwb.trainers.guidg.finetune import DGFinetuneTrainer, GuidedCLIP
from clipwb.trainers.guidg.trainer import check_last_batch
from tests import distributed_kit as dk
from tests import e2e_helpers as h
from tests.dg_kit import make_dg_cfg, write_expert
from tests.dg_layouts import write_domainbed

SOURCES = ["plain", "textured", "noisy"]
EPOCHS = dk.EPOCHS
ITERS = 2  # step-2 batches an epoch
KEYS = {"GuiDG": "GUIDG", "CLIPood": "CLIPOOD", "ERMWiSEFT": "ERMWISEFT",
        "UEOWiSEFT": "UEOWISEFT"}
# case -> (trainer, extra options)
CASES = {
    "GuiDG": ("GuiDG", []),  # toy.yaml: clipood baseline (MMS + BMA), batch-mean weights
    "GuiDG_ueo": ("GuiDG", ["TRAINER.GUIDG.BASELINE", "ueo"]),
    "CLIPood": ("CLIPood", []),
    "ERMWiSEFT": ("ERMWiSEFT", []),
    "UEOWiSEFT": ("UEOWiSEFT", []),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, toy_data):
    tmp = tmp_path_factory.mktemp("ddp_guidg")
    experts = tmp / "experts"
    for seed, domain in enumerate(SOURCES):  # the toy CLIP's text width is 64
        write_expert(str(experts / ("expert_" + domain)), n_ctx=4, width=64, seed=seed)
    return dict(tmp=tmp, data=toy_data, experts=str(experts / "expert_{domain}"),
                runs={"tmp": tmp})


def step2_args(world, trainer, out, *extra):
    """A tiny step 2 on the toy world: 3 sources x 2 images a batch (3 per
    rank, across a domain boundary), 2 batches an epoch, 4 test batches.

    SGD with momentum instead of the recipe's AdamW: AdamW divides each
    gradient by its running magnitude, so a weight whose true gradient is
    zero (the attention's key bias: a softmax ignores a shift) moves by up to
    the learning rate in the direction of its float rounding noise, which
    differs between one process's batch sum and two processes' mean (there
    the checkpoints part by ~1.5 x LR while every logged loss agrees to
    1e-5); SGD moves it by LR x the noise."""
    key = KEYS[trainer]
    return ["--root", world["data"], "--seed", 1, "--trainer", trainer,
            "--dataset-config-file", "configs/datasets/toy_dg.yaml",
            "--config-file", "configs/trainers/GuiDG/toy.yaml", "--output-dir", out,
            "DATASET.SOURCE_DOMAINS", str(SOURCES), "DATASET.TARGET_DOMAINS", "['sketch']",
            "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", EPOCHS,
            "OPTIM.NAME", "sgd", "OPTIM.LR", 0.01, "OPTIM.MOMENTUM", 0.9,
            "TRAINER.{}.BATCH_PER_DOMAIN".format(key), 2,
            "TRAINER.{}.ITERS_PER_EPOCH".format(key), ITERS,
            "TRAINER.GUIDG.EXPERT_DIR", world["experts"],
            "TRAIN.PRINT_FREQ", 1, "DATALOADER.TEST.BATCH_SIZE", 50] + list(extra)


def expert_args(world, out):
    """Step 1 on pool A of one domain: 50 images in batches of 8, the last
    one (2 images) kept, so 7 steps an epoch; validated on pool B."""
    return ["--root", world["data"], "--seed", 1, "--trainer", "GuiDGExpert",
            "--dataset-config-file", "configs/datasets/toy_dg.yaml",
            "--config-file", "configs/trainers/GuiDGExpert/toy.yaml", "--output-dir", out,
            "DATASET.SOURCE_DOMAINS", "['plain']", "DATASET.TARGET_DOMAINS", "['plain']",
            "DATASET.DG_TRAIN_POOL", "A", "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", EPOCHS,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 8, "TRAINER.GUIDGEXPERT.DROP_LAST", False,
            "TRAIN.PRINT_FREQ", 1, "DATALOADER.TEST.BATCH_SIZE", 50]


def assert_same_weights(one_dir, two_dir, model, epochs=EPOCHS):
    one = dk.last_weights(one_dir, model, epochs)
    two = dk.last_weights(two_dir, model, epochs)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key].float(), two[key].float(), atol=1e-5), (model, key)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_log_the_step2_losses_and_accuracy_of_one(world, case):
    trainer, extra = CASES[case]
    r = dk.one_and_two(world["runs"], case,
                       lambda out: step2_args(world, trainer, out, *extra))
    one_log, two_log = dk.assert_same_run(r, steps=EPOCHS * ITERS, model="model")
    # the BMA / WiSE-FT encoder that is tested
    assert_same_weights(r["one_dir"], r["two_dir"], "eval_encoder")
    assert "Each of the 2 processes takes 3 of the 6 images of a batch" in two_log
    assert h.evaluator_block(one_log)[0] == 200  # the sketch domain's test images
    if trainer == "GuiDG":  # CMAttn's logged batch-mean weights, one per expert
        assert {"w0", "w1", "w2"} <= set(dk.logged_terms(two_log)[0])
    if "ueo" in case.lower():
        assert "ueo" in dk.logged_terms(two_log)[0]


@pytest.mark.slow
def test_two_processes_train_the_expert_of_one(world):
    r = dk.one_and_two(world["runs"], "expert", lambda out: expert_args(world, out))
    one_log, _ = dk.assert_same_run(r, steps=EPOCHS * 7)
    assert h.evaluator_block(one_log)[0] == 200
    one = torch.load(os.path.join(r["one_dir"], "prompt_learner", "model-best.pth.tar"),
                     map_location="cpu", weights_only=False)
    two = torch.load(os.path.join(r["two_dir"], "prompt_learner", "model-best.pth.tar"),
                     map_location="cpu", weights_only=False)
    assert one["epoch"] == two["epoch"] and one["val_result"] == two["val_result"]
    assert torch.allclose(one["state_dict"]["ctx"], two["state_dict"]["ctx"], atol=1e-5)


RESUME_EPOCHS = 3


@pytest.mark.slow
def test_a_killed_two_process_step2_run_resumes_exactly(world):
    """SIGTERM in epoch 2 of 3; the same command finishes the run with the
    steps, the averaged encoder and the accuracy of one process never stopped."""
    def args(out):
        return step2_args(world, "GuiDG", out, "OPTIM.MAX_EPOCH", RESUME_EPOCHS)

    ref_dir, run_dir = str(world["tmp"] / "ref3"), str(world["tmp"] / "killed")
    reference = h.run_train_py(args(ref_dir))
    assert reference.returncode == 0, h.describe(reference)
    printed, killed = dk.torchrun_stopped_at(
        args(run_dir), "epoch [2/{}] batch [1/".format(RESUME_EPOCHS))
    assert killed, printed[-5:]
    assert any(line.startswith("Interrupted in epoch 2 of {}".format(RESUME_EPOCHS))
               for line in printed), printed[-5:]
    again = dk.torchrun(args(run_dir), 2)
    assert again.returncode == 0, h.describe(again)
    assert "Found the run state of epoch 1" in again.stdout
    ref_log = h.read_log(os.path.join(ref_dir, "log.txt"))
    resumed_log = h.read_log(h.log_paths(run_dir)[-1])
    ref_steps = [row for row, (epoch, _, _) in zip(dk.logged_terms(ref_log), h.progress(ref_log))
                 if epoch >= 2]
    resumed_steps = dk.logged_terms(resumed_log)
    assert len(resumed_steps) == len(ref_steps) == (RESUME_EPOCHS - 1) * ITERS
    for a, b in zip(ref_steps, resumed_steps):
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= 1e-5, (key, a, b)
    assert h.evaluator_block(resumed_log) == h.evaluator_block(ref_log) is not None
    for model in ("model", "eval_encoder"):
        assert_same_weights(ref_dir, run_dir, model, RESUME_EPOCHS)


# -- in process ------------------------------------------------------------------

def toy_step2(baseline):
    """A trainer stand-in for ``DGFinetuneTrainer.compute_loss``: a linear
    "image encoder", 3 experts of 4 classes weighted by a 2-head CMAttn
    (batch-mean weights), and a global batch of 4 images."""
    torch.manual_seed(0)
    classifiers = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    model = GuidedCLIP(torch.nn.Linear(6, 8), classifiers, 10.0, CMAttn(8, 4, 2), "batch")
    images, labels = torch.randn(4, 6), torch.tensor([0, 3, 1, 2])
    node = types.SimpleNamespace(MARGIN=0.3, UEO_WEIGHT=0.5)
    trainer = types.SimpleNamespace(method_cfg=node, get_baseline=lambda: baseline, model=model)
    return trainer, images, labels


def step2_loss_and_gradients(baseline, share=slice(None)):
    trainer, images, labels = toy_step2(baseline)
    loss, summary = DGFinetuneTrainer.compute_loss(trainer, images[share], labels[share])
    loss.backward()
    params = list(trainer.model.parameters())
    distributed.average_gradients(params)
    return distributed.mean_summary(summary), [p.grad.tolist() for p in params]


def _gloo_work(index):
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]][index], requires_grad=True)
    y = distributed.mean_over_ranks(x)
    (y * torch.tensor([[1.0, 1.0], [3.0, 5.0]][index])).sum().backward()
    out = dict(mean=y.tolist(), grad=x.grad.tolist())
    for baseline in ("clipood", "ueo"):  # each rank: 2 images of the 4
        out[baseline] = step2_loss_and_gradients(baseline, slice(2 * index, 2 * index + 2))
    return out


def test_two_gloo_ranks_give_the_step2_loss_and_gradients_of_one():
    got = dk.on_gloo_ranks(_gloo_work)
    for index in (0, 1):
        # y = mean of [1, 2] and [3, 6]; each rank's loss y . c_r: the gradient
        # of y's inputs is the mean of c_0 = [1, 1] and c_1 = [3, 5]
        assert got[index]["mean"] == [2.0, 4.0]
        assert got[index]["grad"] == [2.0, 3.0]
    for baseline in ("clipood", "ueo"):
        summary, grads = step2_loss_and_gradients(baseline)  # one process, whole batch
        assert set(summary) >= {"loss", "acc", "w0", "w1", "w2"}
        assert ("ueo" in summary) == (baseline == "ueo")
        for index in (0, 1):
            two_summary, two_grads = got[index][baseline]
            assert two_summary.keys() == summary.keys()
            for key in summary:
                assert two_summary[key] == pytest.approx(summary[key], abs=1e-6), key
            for g1, g2 in zip(grads, two_grads):
                assert torch.allclose(torch.tensor(g1), torch.tensor(g2), atol=1e-6)
        # CMAttn is trained by the weights' gradient
        assert all(torch.tensor(g).abs().sum() > 0 for g in grads[2:])


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    return write_domainbed(tmp_path_factory.mktemp("dg"), "PACS", n_classes=3, n_per_class=10,
                           domains=["art_painting", "cartoon", "photo"])


def step2_cfg(pacs, clip, tmp_path, per_domain):
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    return make_dg_cfg("GuiDG", pacs, clip, tmp_path / "out", [
        "TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
        "TRAINER.GUIDG.BATCH_PER_DOMAIN", per_domain, "TRAINER.GUIDG.ITERS_PER_EPOCH", 2])


def test_each_rank_keeps_its_slice_of_the_domain_balanced_batch(pacs, tiny_clip_path, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    trainer = build_trainer(step2_cfg(pacs, tiny_clip_path, tmp_path, 3))
    loader = trainer.train_loader_x
    assert len(loader) == 2
    batch = next(iter(loader))
    assert batch["domain"].tolist() == [1, 1, 1]  # rank 1's half of [0, 0, 0, 1, 1, 1]
    assert batch["img"].shape[0] == 3
    # the sampler's state is still found for the run state (exact resume)
    assert [type(s).__name__ for s in trainer._train_samplers()] == [
        "DomainBalancedBatchSampler"]


def test_a_step2_batch_that_does_not_split_is_one_sentence(pacs, tiny_clip_path, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match=r"^TRAINER.GUIDG.BATCH_PER_DOMAIN 3 x 2 source "
                                          r"domains = 6 is the global batch \(the single-"
                                          r"process recipe's\) and must split evenly over the "
                                          r"4 processes: use a --nproc_per_node that divides "
                                          r"6.$"):
        build_trainer(step2_cfg(pacs, tiny_clip_path, tmp_path, 3))


def test_a_kept_last_batch_that_does_not_split_is_one_sentence():
    check_last_batch(10, 4, world=2)  # last batch of 2: one image per rank
    check_last_batch(8, 4, world=2)   # no incomplete batch
    check_last_batch(9, 4, world=1)
    with pytest.raises(ConfigError, match=r"^TRAINER.GUIDGEXPERT.DROP_LAST False keeps a last "
                                          r"batch of 1 images \(9 training images in batches "
                                          r"of 4\), which does not split evenly over the 2 "
                                          r"processes: set TRAINER.GUIDGEXPERT.DROP_LAST True, "
                                          r"or use a --nproc_per_node that divides 1.$"):
        check_last_batch(9, 4, world=2)


def test_train_py_splits_the_batch_step_2_draws(pacs, tiny_clip_path, tmp_path):
    """train.py checks and reports the batch the trainer splits: for step 2
    BATCH_PER_DOMAIN x source domains, not DATALOADER.TRAIN_X.BATCH_SIZE
    (which it does not use); the other trainers' is TRAIN_X's."""
    from clipwb.engine import TRAINER_REGISTRY

    cfg = step2_cfg(pacs, tiny_clip_path, tmp_path, 3)
    cfg.defrost()
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5  # splits over no number of processes
    assert distributed.global_batch(TRAINER_REGISTRY.get("GuiDG"), cfg) == (
        6, "TRAINER.GUIDG.BATCH_PER_DOMAIN 3 x 2 source domains =")
    assert distributed.global_batch(TRAINER_REGISTRY.get("CoOp"), cfg) == (
        5, "DATALOADER.TRAIN_X.BATCH_SIZE")
    assert distributed.global_batch(TRAINER_REGISTRY.get("GuiDGExpert"), cfg)[0] == 5
