"""The half-precision code paths (PREC fp16 and amp, the CoOp family's GPU
modes, fp16_master and bf16 autocast) of every trainer, run on the CPU with
``PREC_ON_CPU=1``: fp16 frozen weights with the official float16 parameters
(fp16) or float32 master prompts (fp16_master), autocast with a GradScaler. The
CPU has the same dtype rules as CUDA here, so a dtype mix-up in a trainer
(an fp32 module fed fp16 tokens, an fp16 loss term, a scaler step on the
wrong optimizer) fails here instead of on the first GPU run."""
import pytest
import torch

from clipwb.engine import build_trainer
from tests.dg_kit import make_dg_cfg, write_expert
from tests.dg_layouts import write_domainbed
from tests.trainer_kit import make_cfg, write_two_class_images
from clipwb.trainers.kit.precision import PREC_ON_CPU_ENV

PROMPT_TRAINERS = {"CoOp": "COOP", "KgCoOp": "COOP", "CoCoOp": "COCOOP", "IVLP": "IVLP",
                   "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC", "DiSa": "DISA", "ISP": "ISP",
                   "ProGrad": "COOP", "TCP": "COOP", "MMRL": "MMRL",
                   "MultiModalAdapter": "MMADAPTER"}
# keys a trainer needs beside PREC (TCP's prompts have 4 context tokens)
EXTRA_OPTS = {"TCP": ("TRAINER.COOP.N_CTX", 4),
              # MMRL's representation tokens at both blocks of the tiny CLIP
              "MMRL": ("TRAINER.MMRL.REP_LAYERS", [1, 2], "TRAINER.MMRL.REP_DIM", 16),
              # MMA's adapters at every index of the 2-block tiny CLIP
              "MultiModalAdapter": ("TRAINER.MMADAPTER.ADAPTER_START", 0,
                                    "TRAINER.MMADAPTER.ADAPTER_END", 2)}
# the summary entry that is the descended loss (ProGrad logs the official
# xe_loss / kl_loss pair; it descends xe_loss)
LOSS_NAME = {"ProGrad": "xe_loss"}
# amp starts its loss scale at 2^16: the first steps overflow in float16 and
# are skipped until the scale fits, as on a GPU
STEPS = {"fp16": 5, "fp16_master": 5, "amp": 10, "bf16": 8}
# the learnable tensors the official code creates in CLIP's dtype (float16
# parameters under PREC fp16): the context, CoCoOp's meta-net, MaPLe's proj,
# MMA's adapters, MMRL's tokens and their projections
HALF_PARAMS = ("ctx", "meta_net.", "proj.", "text_adapter.", "visual_adapter.",
               "shared_adapter.",
               "compound_rep_tokens")
# CoCoOp's meta-net learns slowly at trainer_kit's LR: a larger one, so that its
# loss moves by more than bf16's rounding of the logits in a few steps
LR = {"CoCoOp": 0.01}


@pytest.fixture(autouse=True)
def prec_on_cpu(monkeypatch):
    monkeypatch.setenv(PREC_ON_CPU_ENV, "1")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("half_two_class"))


def train_steps(trainer, batch, steps):
    trainer.set_model_mode("train")
    losses = []
    for _ in range(steps):
        trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
        summary = trainer.forward_backward(batch)
        losses.append(summary[LOSS_NAME.get(type(trainer).__name__, "loss")])
    return losses


@pytest.mark.parametrize("prec", ["fp16", "fp16_master", "amp", "bf16"])
@pytest.mark.parametrize("name", sorted(PROMPT_TRAINERS))
def test_prompt_trainer_learns_in_half_precision(name, prec, tiny_clip_path, data_root,
                                                 tmp_path, capsys):
    torch.manual_seed(0)
    key = "TRAINER.{}.PREC".format(PROMPT_TRAINERS[name])
    trainer = build_trainer(make_cfg(name, tiny_clip_path, data_root, tmp_path,
                                     (key, prec) + EXTRA_OPTS.get(name, ()),
                                     lr=LR.get(name, 2e-4)))
    assert "{} = {} on the CPU".format(key, prec) in capsys.readouterr().out
    weights = torch.float16 if prec in ("fp16", "fp16_master") else torch.float32
    assert trainer.model.image_encoder.dtype == trainer.model.text_encoder.dtype == weights
    assert (trainer.scaler is not None) == (prec == "amp")  # bf16 needs no loss scaling
    if hasattr(trainer, "class_prototypes"):
        trainer.class_prototypes()  # DiSa: once per run, before training
    learner = getattr(trainer.model, trainer.learnable_module)
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    batch = next(iter(trainer.train_loader_x))
    losses = train_steps(trainer, batch, STEPS[prec])
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], losses
    for n, p in learner.named_parameters():
        # fp16: the official float16 parameters; otherwise float32 masters
        half = prec == "fp16" and n.startswith(HALF_PARAMS)
        assert p.dtype == (torch.float16 if half else torch.float32), n
        assert torch.isfinite(p).all(), n
    changed = {n for n, p in learner.named_parameters() if not torch.equal(before[n], p)}
    # the context learns, in its dtype (MMA, without one: its adapters)
    assert "ctx" in changed if "ctx" in before else changed
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(batch["img"])
    assert logits.dtype == torch.float32 and logits.shape == (len(batch["img"]), 2)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_guidg_fine_tuning_in_half_precision_uses_amp(prec, tiny_clip_path, tmp_path, capsys):
    """GuiDG fine-tunes the image encoder, so PREC fp16 means amp (float32
    master weights) there."""
    pacs = write_domainbed(tmp_path / "dg", "PACS", n_classes=3, n_per_class=10,
                           domains=["art_painting", "cartoon", "photo"])
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    opts = ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
            "TRAINER.GUIDG.BATCH_PER_DOMAIN", "3", "TRAINER.GUIDG.PREC", prec]
    torch.manual_seed(0)
    trainer = build_trainer(make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / "out", opts))
    out = capsys.readouterr().out
    assert "TRAINER.GUIDG.PREC = {} on the CPU".format(prec) in out
    assert trainer.precision == "amp" and trainer.scaler is not None
    assert ("using amp" in out) == (prec == "fp16")
    batch = next(iter(trainer.train_loader_x))
    losses = train_steps(trainer, batch, STEPS["amp"])
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], losses
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
