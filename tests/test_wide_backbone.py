"""Every trainer of the project on a CLIP whose widths are not ViT-B's.

ViT-L/14 has a 768-wide text encoder, a 1024-wide image encoder, a 768-wide
joint embedding and twice the text encoder's depth in its image encoder;
ViT-B/16 has 512 / 768 / 512 and 12 / 12. A width or depth written into a
trainer instead of read from the loaded model fits one of them only. Here each
trainer is built on :data:`tests.tiny_clip.WIDE_CLIP_KWARGS` (text 320, image
384, embedding 96; 2 text and 3 image blocks), takes one training step (the
zero-shot ones: one prediction) and predicts both classes of a batch.
"""
import pytest
import torch

from clipwb import registration
from clipwb.engine import TRAINER_REGISTRY, build_trainer
from tests.dg_kit import make_dg_cfg, write_expert
from tests.dg_layouts import write_domainbed
from tests.test_dept import N_CTX, PAIRINGS
from tests.test_half_precision import EXTRA_OPTS
from tests.tiny_clip import WIDE_CLIP_KWARGS, build_tiny_clip, write_tiny_clip
from tests.trainer_kit import make_cfg, write_two_class_images

TRAINERS = sorted(list(registration.BASELINE_TRAINERS) + list(registration.PLUGIN_TRAINERS))
ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")
#: GuiDG's step 2 and the DG fine-tuning baselines (domain-balanced PACS batches)
DG_STEP2 = ("GuiDG", "CLIPood", "ERMWiSEFT", "UEOWiSEFT")
#: GuiDG's step 1: one expert (a CoOp) per source domain, tested on that domain
DG_STEP1 = ("GuiDGExpert",)
TEXT_WIDTH, IMAGE_WIDTH = WIDE_CLIP_KWARGS["transformer_width"], WIDE_CLIP_KWARGS["vision_width"]


@pytest.fixture(scope="module")
def wide_clip_path(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("wide_clip") / "wide_clip.pt",
                           kwargs=WIDE_CLIP_KWARGS)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("wide_two_class"))


def opts_of(name):
    """The keys the trainer needs on a 2-block CLIP (as in the tiny-CLIP tests)."""
    if name.startswith("ExtrasLinearProbe"):
        return N_CTX[PAIRINGS[name]]
    return EXTRA_OPTS.get("MultiModalAdapter" if name == "MMA" else name, ())


def build(name, clip_path, data_root, tmp_path):
    torch.manual_seed(0)
    if name not in DG_STEP1 + DG_STEP2:
        cfg = make_cfg(name, clip_path, data_root, tmp_path / "out", opts_of(name))
        cfg.defrost()
        cfg.DATASET.SUBSAMPLE_CLASSES = "base"  # DePT's probe: the tiny dataset keeps both
        cfg.freeze()
        return build_trainer(cfg)
    pacs = write_domainbed(tmp_path / "dg", "PACS", n_classes=2, n_per_class=10,
                           domains=["art_painting", "cartoon", "photo"])
    if name in DG_STEP1:
        domain = repr(["art_painting"])
        return build_trainer(make_dg_cfg(name, pacs, clip_path, tmp_path / "out",
                                         ["DATASET.SOURCE_DOMAINS", domain,
                                          "DATASET.TARGET_DOMAINS", domain,
                                          "DATASET.DG_TRAIN_POOL", "A"]))
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        # step 1's contexts are text tokens: the text encoder's width
        write_expert(str(experts / ("expert_" + domain)), width=TEXT_WIDTH, seed=seed)
    node = "TRAINER.{}.".format(TRAINER_REGISTRY.get(name).cfg_key)
    return build_trainer(make_dg_cfg(name, pacs, clip_path, tmp_path / "out",
                                     ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
                                      node + "BATCH_PER_DOMAIN", "2"]))


def test_the_wide_clip_differs_from_vit_b_in_every_width(wide_clip_path):
    clip = build_tiny_clip(kwargs=WIDE_CLIP_KWARGS)
    widths = (clip.ln_final.weight.shape[0], clip.visual.conv1.out_channels,
              clip.visual.output_dim)
    assert widths == (320, 384, 96)  # ViT-B/16: (512, 768, 512); the tiny CLIP: 64 each
    assert (len(clip.transformer.resblocks), len(clip.visual.transformer.resblocks)) == (2, 3)


@pytest.mark.parametrize("name", TRAINERS)
def test_trainer_steps_on_a_clip_of_other_widths(name, wide_clip_path, data_root, tmp_path):
    trainer = build(name, wide_clip_path, data_root, tmp_path)
    batch = next(iter(trainer.train_loader_x))
    n_classes = trainer.dm.num_classes
    if name not in ZERO_SHOT:
        learnable = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                     if p.requires_grad}
        assert learnable, name
        if hasattr(trainer, "class_prototypes"):
            trainer.class_prototypes()  # DiSa: once per run, before training
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, 1000
        summary = trainer.forward_backward(batch)
        assert all(torch.isfinite(torch.tensor(float(v))) for v in summary.values()), summary
        params = dict(trainer.model.named_parameters())
        changed = [n for n, before in learnable.items() if not torch.equal(before, params[n])]
        assert changed, name
        # the learned tensors are of the loaded model's widths, never ViT-B's
        dims = {d for n in changed for d in params[n].shape}
        assert not dims & {512, 768}, (name, dims)
        assert dims & {TEXT_WIDTH, IMAGE_WIDTH, WIDE_CLIP_KWARGS["embed_dim"]}, (name, dims)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(batch["img"])
    assert logits.shape == (len(batch["img"]), n_classes)
    assert torch.isfinite(logits).all()
