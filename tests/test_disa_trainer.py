"""The DiSa trainer on a tiny CLIP and a 2-class dataset: building, the loss
going down, one frozen image pass per step, prototypes computed once, the
masking wired into L_CIR, GPA and the config checks."""
import os

import pytest
import torch
import torch.nn.functional as F

import clipwb.trainers
from clipwb.engine import build_trainer, get_cfg_default
from clipwb.errors import ConfigError
from tests.trainer_kit import make_cfg, write_two_class_images
from clipwb.trainers.disa.trainer import DiSa
from clipwb.trainers.disa.losses import class_prototypes
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES

# this module's settings, after trainer_kit.make_cfg's common ones
TEST_BATCH_SIZE = 3
TRAINER_OPTS = ("TRAINER.DISA.GPA_MEAN", 2)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("tiny_disa"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path, monkeypatch):
    # 3 of PromptSRC's 60 templates keep the builds fast (the full set is
    # tested in test_trainer_units.py); DiSa inherits the attribute.
    monkeypatch.setattr(DiSa, "teacher_templates", PROMPTSRC_TEMPLATES[:3])

    def _build(*opts, output_dir=None):
        torch.manual_seed(0)
        cfg = make_cfg("DiSa", tiny_clip_path, data_root, output_dir or tmp_path / "out",
                       TRAINER_OPTS + opts, test_batch_size=TEST_BATCH_SIZE)
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


def record_encoder_calls(trainer):
    """Wrap the (shared) image encoder's ``encode``; each call records
    (prompted?, number of patch tokens kept or None)."""
    encoder = trainer.model.image_encoder
    original = encoder.encode
    calls = []

    def encode(image, shallow_prompts=None, deep_prompts=None, keep_index=None, **kwargs):
        kept = None if keep_index is None else keep_index.shape[1]
        calls.append((shallow_prompts is not None, kept))
        return original(image, shallow_prompts, deep_prompts, keep_index, **kwargs)

    encoder.encode = encode
    return calls


def test_disa_builds_and_training_lowers_the_loss(build):
    trainer = build()
    assert trainer.get_model_names() == ["prompt_learner"]
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    batch = first_batch(trainer)
    summaries = [trainer.forward_backward(batch) for _ in range(6)]
    losses = [s["loss"] for s in summaries]
    assert losses[-1] < losses[0], losses
    first = summaries[0]
    parts = ["loss_ce", "loss_scl_text", "loss_scl_image", "loss_scl_logits", "loss_cir",
             "loss_dir"]
    assert first["loss"] == pytest.approx(sum(first[k] for k in parts), rel=1e-4)
    assert first["loss_cir"] > 0 and first["loss_dir"] > 0
    frozen = [p for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


def test_one_frozen_pass_and_a_masked_prompted_pass_per_step(build):
    trainer = build()
    trainer.class_prototypes()
    calls = record_encoder_calls(trainer)
    batch = first_batch(trainer)
    for _ in range(3):
        trainer.forward_backward(batch)
    # per step: frozen (full image), prompted (full), prompted (11 of 16 patches)
    assert calls == [(False, None), (True, None), (True, 11)] * 3


def test_prototypes_are_computed_once_per_run(build, tmp_path, monkeypatch):
    trainer = build(output_dir=tmp_path / "run")
    counted = []
    original = trainer.compute_prototypes

    def counting():
        counted.append(1)
        return original()

    monkeypatch.setattr(trainer, "compute_prototypes", counting)
    trainer.train()  # 2 epochs x 2 batches, then the test
    assert counted == [1]
    # the frozen features of the 8 training images, class means, normalised
    loader_images = torch.stack([b for batch in trainer.test_loader for b in batch["img"]])
    labels = torch.tensor([0] * 4 + [1] * 4)
    with torch.no_grad():
        feats = F.normalize(trainer.model.image_encoder(loader_images), dim=-1)
    expected = F.normalize(torch.stack([feats[:4].mean(0), feats[4:].mean(0)]), dim=-1)
    assert torch.allclose(trainer.class_prototypes(), expected, atol=1e-5)
    assert torch.allclose(class_prototypes(feats, labels, 2), expected, atol=1e-6)
    # a new trainer (a resumed run) recomputes exactly the same prototypes
    again = build(output_dir=tmp_path / "again")
    assert torch.allclose(again.compute_prototypes(), trainer.class_prototypes(), atol=1e-6)


def test_text_prototypes_and_no_masking_switches(build):
    trainer = build("TRAINER.DISA.PROTOTYPE", "frozen_text", "TRAINER.DISA.CIR_MASKED", False)
    assert torch.equal(trainer.class_prototypes(), trainer.model.zero_shot.text_features)
    calls = record_encoder_calls(trainer)
    trainer.forward_backward(first_batch(trainer))
    assert calls == [(False, None), (True, None)]  # no masked pass


@pytest.mark.parametrize("opts, expected", [
    (("TRAINER.DISA.MASK_MODE", "zero_pixels"), [(False, None), (True, None), (True, None)]),
    (("TRAINER.DISA.CIR_FROZEN_INPUT", "masked", "TRAINER.DISA.MASK_RATIO", 0.5),
     [(False, None), (True, None), (True, 8), (False, 8)]),
    (("TRAINER.DISA.SALIENCY", "text"), [(False, None), (True, None), (True, 11)]),
    (("TRAINER.DISA.SALIENCY", "random", "TRAINER.DISA.MASK_SELECTION", "sample",
      "TRAINER.DISA.CIR_KL", "symmetric", "TRAINER.DISA.DIR_FORM", "delta"),
     [(False, None), (True, None), (True, 11)]),
])
def test_alternatives_train(build, opts, expected):
    trainer = build(*opts)
    trainer.class_prototypes()
    calls = record_encoder_calls(trainer)
    summary = trainer.forward_backward(first_batch(trainer))
    assert calls == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())


def test_zero_weights_drop_the_terms(build):
    trainer = build("TRAINER.DISA.CIR_LOSS_WEIGHT", 0.0, "TRAINER.DISA.DIR_LOSS_WEIGHT", 0.0)
    summary = trainer.forward_backward(first_batch(trainer))
    assert "loss_cir" not in summary and "loss_dir" not in summary
    assert trainer._prototypes is None  # never needed


def test_gpa_switch(build, tmp_path):
    trainer = build("TRAINER.DISA.USE_GPA", False, output_dir=tmp_path / "nogpa")
    learner = trainer.model.prompt_learner
    for epoch in range(2):
        trainer.epoch = epoch
        with torch.no_grad():
            learner.ctx.fill_(float(epoch + 1))
        trainer.after_epoch()
    assert torch.all(learner.ctx == 2.0)  # the last epoch's prompts, not an average
    with_gpa = build(output_dir=tmp_path / "gpa")
    learner = with_gpa.model.prompt_learner
    for epoch in range(2):
        with_gpa.epoch = epoch
        with torch.no_grad():
            learner.ctx.fill_(float(epoch + 1))
        with_gpa.after_epoch()
    w = with_gpa.gpa.weights
    assert torch.allclose(learner.ctx, torch.full_like(learner.ctx, w[0] * 1 + w[1] * 2))


@pytest.mark.parametrize("key, value", [
    ("MASK_RATIO", 1.0), ("MASK_RATIO", -0.1), ("SALIENCY", "gradients"),
    ("MASK_MODE", "blur"), ("CIR_KL", "backward"), ("PROTOTYPE", "ema"), ("DIR_FORM", "l2"),
    ("MASK_SELECTION", "random"), ("CIR_FROZEN_INPUT", "none"), ("DIR_LOSS_WEIGHT", -1.0),
])
def test_bad_values_name_the_key(build, key, value):
    with pytest.raises(ConfigError, match="TRAINER.DISA." + key):
        build("TRAINER.DISA." + key, value)


def test_keys_and_shipped_configs():
    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    node = cfg.TRAINER.DISA
    assert (node.MASK_RATIO, node.SALIENCY, node.MASK_MODE, node.CIR_KL, node.PROTOTYPE,
            node.DIR_FORM, node.DIR_LOSS_WEIGHT, node.CIR_LOSS_WEIGHT) == \
        (0.3, "cls_attention", "drop_tokens", "forward", "frozen_image", "cosine", 1.0, 1.0)
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "trainers", "DiSa")
    expected = {"vit_b16_c2_ep20_batch4_4+4ctx.yaml": (20, 9, 15, 1),
                "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml": (20, 3, 6, 10),
                "vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml": (50, 9, 30, 30)}
    for name, (epochs, depth, gpa_mean, gpa_std) in expected.items():
        c = cfg.clone()
        c.merge_from_file(os.path.join(root, name))
        d = c.TRAINER.DISA
        assert (c.OPTIM.MAX_EPOCH, d.PROMPT_DEPTH_VISION, d.PROMPT_DEPTH_TEXT, d.GPA_MEAN,
                d.GPA_STD) == (epochs, depth, depth, gpa_mean, gpa_std), name
        assert (c.OPTIM.LR, c.DATALOADER.TRAIN_X.BATCH_SIZE, d.N_CTX_TEXT, d.N_CTX_VISION,
                d.TEXT_LOSS_WEIGHT, d.IMAGE_LOSS_WEIGHT, d.MASK_RATIO, d.SALIENCY) == \
            (0.0025, 4, 4, 4, 25, 10, 0.3, "cls_attention"), name
