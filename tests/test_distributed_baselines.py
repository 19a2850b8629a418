"""The baselines on two processes (``torchrun``, gloo on the CPU) equal one.

End to end (slow): KgCoOp, TCP, MultiModalAdapter (and its alias MMA), MMRL
and DePT's five pairings train on a tiny Caltech101 of 4 classes with the
tiny CLIP once with ``python train.py`` and once with ``torchrun
--nproc_per_node 2 train.py`` (global batch 4: 2 images per rank; one test
image per batch, so the test batches are shared): every logged loss term,
the last checkpoint of every registered model and the evaluator block are
the single-process run's. Their losses are means over the images (or terms
of the classes alone, equal on every rank), so averaging the gradients is
enough; DePT averages every parameter that trains, wherever
``TRAINER.NAMES_TO_UPDATE`` finds it. TCP and DePT-MaPLe run ``fp32_exact``
(the official fp32 keeps float16 weights or prompts: see ``CASES``). In
process: under ``amp`` (MMA's default PREC), two ranks that each backpropagate
their own scaled mean overflow at half the one-process scale;
:func:`~clipwb.engine.distributed.scaled_backward` steps and skips as one
process, and an overflow on one rank makes both skip.
"""
import os

import pytest
import torch

from clipwb.engine import distributed
from tests import distributed_kit as dk
from tests import e2e_helpers as h
from tests.distributed_kit import EPOCHS
from tests.tiny_clip import TINY_CLIP_KWARGS, write_tiny_clip

#: trainer -> (config folder, its opts for the tiny CLIP). The toy configs
#: are the methods' recipes scaled down; here the depths fit the tiny CLIP's
#: 2 blocks and no warm-up epoch (both epochs train at the real rate).
CASES = {
    "KgCoOp": ("KgCoOp", []),
    # the tiny CLIP with 9 text blocks: TCP's class-aware tokens enter at block 8.
    # fp32_exact: under the official fp32 the meta-net is a float16 module
    # updated in place, and a last-bit difference of its gradient that flips a
    # rounding moves a weight by a float16 step (the logged loss then differs
    # from the second step on by about 4e-4)
    "TCP": ("TCP", ["OPTIM.LR", 0.002, "TRAINER.COOP.PREC", "fp32_exact"]),
    "MultiModalAdapter": ("MultiModalAdapter", [
        "TRAINER.MMADAPTER.ADAPTER_START", 0, "TRAINER.MMADAPTER.ADAPTER_END", 2,
        "TRAINER.MMADAPTER.ADAPTER_DIM", 8, "TRAINER.MMADAPTER.ADAPTER_SCALE", 0.1]),
    "MMA": ("MultiModalAdapter", [
        "TRAINER.MMADAPTER.ADAPTER_START", 1, "TRAINER.MMADAPTER.ADAPTER_END", 2,
        "TRAINER.MMADAPTER.ADAPTER_DIM", 8]),
    "MMRL": ("MMRL", ["TRAINER.MMRL.REP_LAYERS", "[1, 2]", "TRAINER.MMRL.N_REP_TOKENS", 3,
                      "TRAINER.MMRL.REP_DIM", 16]),
    # DePT: LR 0.01 (the head's 0.065): at the toy's 0.05 the probe's loss
    # oscillates on the tiny CLIP and amplifies the last-bit differences of the
    # two mean gradients to 1e-4 within 3 steps
    "ExtrasLinearProbeCoOp": ("ExtrasLinearProbeCoOp", ["OPTIM.LR", 0.01]),
    "ExtrasLinearProbeCoCoOp": ("ExtrasLinearProbeCoCoOp", ["OPTIM.LR", 0.01]),
    "ExtrasLinearProbeKgCoOp": ("ExtrasLinearProbeKgCoOp", ["OPTIM.LR", 0.01]),
    # fp32_exact: the official fp32 rounds MaPLe's prompts to float16 (see
    # tests/test_distributed.py: a last-bit difference of the gradient then
    # moves a weight by a float16 step)
    "ExtrasLinearProbeMaPLe": ("ExtrasLinearProbeMaPLe", [
        "OPTIM.LR", 0.01, "TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32_exact"]),
    "ExtrasLinearProbePromptSRC": ("ExtrasLinearProbePromptSRC", [
        "OPTIM.LR", 0.001, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.GPA_MEAN", 2,
        "TRAINER.PROMPTSRC.GPA_STD", 1]),
}
#: the registered models (checkpoint folders) of each trainer
MODELS = {"MultiModalAdapter": ["adapter_learner"], "MMA": ["adapter_learner"]}
MODELS.update({name: ["prompt_learner", "dept_head"] for name in CASES
               if name.startswith("ExtrasLinearProbe")})
BATCH = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_path):
    world = dk.toy_world(tmp_path_factory, tiny_clip_path, "ddp_baselines")
    world["deep_clip"] = write_tiny_clip(world["tmp"] / "tiny_clip_9_text_layers.pt",
                                         kwargs=dict(TINY_CLIP_KWARGS, transformer_layers=9))
    return world


def run_args(world, trainer, out):
    folder, opts = CASES[trainer]
    clip = world["deep_clip"] if trainer == "TCP" else world["clip"]
    return (["--root", world["data"], "--seed", 1, "--trainer", trainer,
             "--dataset-config-file", "configs/datasets/caltech101.yaml",
             "--config-file", os.path.join("configs", "trainers", folder, "toy.yaml"),
             "--output-dir", out, "MODEL.BACKBONE.NAME", clip] + h.COMMON_OPTS
            + ["OPTIM.MAX_EPOCH", EPOCHS, "OPTIM.WARMUP_EPOCH", 0,
               "DATALOADER.TRAIN_X.BATCH_SIZE", BATCH, "DATASET.SUBSAMPLE_CLASSES", "base",
               "DATALOADER.TEST.BATCH_SIZE", 1] + opts)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", list(CASES))
def test_two_processes_log_the_losses_and_accuracy_of_one(world, trainer):
    runs = dk.one_and_two(world["runs"], trainer, lambda out: run_args(world, trainer, out))
    models = MODELS.get(trainer, ["prompt_learner"])
    one_log, two_log = dk.assert_same_run(runs, steps=EPOCHS * 8 // BATCH, model=models[0])
    # 8 base images, global batch 4 (2 per process); 4 test images
    assert "global batch 4, 2 images per process" in two_log
    assert h.evaluator_block(one_log)[0] == 4
    for model in models[1:]:
        one_w = dk.last_weights(runs["one_dir"], model)
        two_w = dk.last_weights(runs["two_dir"], model)
        assert one_w.keys() == two_w.keys() and one_w
        for key in one_w:
            assert torch.allclose(one_w[key].float(), two_w[key].float(), atol=1e-5), key
    # the loss terms besides the total were logged and compared too
    if trainer.startswith("ExtrasLinearProbe"):
        assert {"loss_sim", "loss_lp"} <= set(dk.logged_terms(one_log)[0])


def test_every_baseline_class_declares_torchrun_ready(monkeypatch):
    from clipwb.engine import TRAINER_REGISTRY

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in CASES:
        cls = TRAINER_REGISTRY.get(name)
        assert vars(cls).get("torchrun_ready") is True, name  # not inherited
        distributed.check_launch(cls, "builtin")


def test_dept_averages_every_parameter_its_optimizer_updates(tiny_clip_path, tmp_path,
                                                            monkeypatch):
    """``TRAINER.NAMES_TO_UPDATE`` may train parameters outside the registered
    prompt learner and head (here the text encoder's ``ln_final``): the
    gradients averaged over the ranks are exactly the optimizer's parameters.
    (Not seen end to end: such parameters are in no checkpoint, and the
    ranks' slightly different ``ln_final`` moved the logged losses by less
    than their 4 decimals in the toy run.)"""
    from clipwb.engine import build_trainer
    from tests.trainer_kit import make_cfg, write_two_class_images

    os.makedirs(tmp_path / "data")
    data = write_two_class_images(tmp_path / "data")
    cfg = make_cfg("ExtrasLinearProbeCoOp", tiny_clip_path, data, tmp_path / "out",
                   ["TRAINER.COOP.N_CTX", 4, "TRAINER.NAMES_TO_UPDATE",
                    ["prompt_learner", "linear_probe", "film", "ln_final"]])
    cfg.defrost()
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    cfg.freeze()
    trainer = build_trainer(cfg)
    averaged = {id(p) for p in trainer.learnable_parameters()}
    updated = {id(p) for group in trainer.optim.param_groups for p in group["params"]}
    text_norm = trainer.model.text_encoder.ln_final
    assert id(text_norm.weight) in updated and id(trainer.model.prompt_learner.ctx) in updated
    assert averaged == updated
    assert len(trainer.learnable_parameters()) == len(averaged)  # each once
    # what the engine's backward hands to the all-reduce
    seen = []
    monkeypatch.setattr(distributed, "average_gradients",
                        lambda params: seen.append({id(p) for p in params}))
    trainer.sync_gradients()
    assert seen == [updated]


# -- the GradScaler of amp on two processes (in process, gloo) -------------------------------
def _scaled_step(samples, backward, scale=2.0 ** 17):
    """One amp step of ``p`` (1.0) on the mean over ``samples`` of
    ``float((p * x).half())``: the float16 gradient of each term is
    ``scale / len(samples)`` (65536 overflows float16, 32768 does not).
    Returns ``(p after the SGD step of lr 0.1, the scale after update)``."""
    param = torch.nn.Parameter(torch.tensor([1.0]))
    optim = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    loss = (param * torch.tensor(samples)).half().float().mean()
    backward(scaler, loss, [param])
    scaler.step(optim)
    scaler.update()
    return param.item(), scaler.get_scale()


def _plain_backward(scaler, loss, params):
    scaler.scale(loss).backward()
    distributed.average_gradients(params)


SAMPLES = [1.0, 2.0, 3.0, 4.0]


def _scaler_work(index):
    mine = distributed.rank_share(SAMPLES)
    overflowing = [float("inf")] * 2 if index == 1 else mine
    return dict(plain=_scaled_step(mine, _plain_backward),
                shared=_scaled_step(mine, distributed.scaled_backward),
                one_rank_overflows=_scaled_step(overflowing, distributed.scaled_backward))


def test_amp_steps_and_skips_as_one_process_on_both_ranks():
    """The one-process step: the gradient mean(x) = 2.5 unscaled, p = 1 -
    0.1 * 2.5, the scale kept. Two ranks that each backpropagate their own
    scaled mean (a plain scaled backward) overflow at half that scale: both
    skip and back off. :func:`scaled_backward` steps as one process; an
    overflow on one rank makes both skip."""
    one = _scaled_step(SAMPLES, distributed.scaled_backward)
    assert one == (0.75, 2.0 ** 17)
    got = dk.on_gloo_ranks(_scaler_work)
    for steps in got:
        assert steps["plain"] == (1.0, 2.0 ** 16)  # skipped where one process steps
        assert steps["shared"] == one
        assert steps["one_rank_overflows"] == (1.0, 2.0 ** 16)
