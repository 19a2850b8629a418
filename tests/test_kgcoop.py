"""KgCoOp: the knowledge-guided loss against hand-computed values, the
hand-crafted text features against the stock CLIP's ``encode_text``, the
trainer's loss, training steps, checkpoints, configs and the toy script."""
import math
import os

import pytest
import torch
from clip import clip as clip_api
from clip.model import convert_weights

from clipwb.engine import build_trainer
from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.handcrafted_text import (KGCOOP_TEMPLATES, handcrafted_text_features,
                                                  kgcoop_template, knowledge_guided_loss)
from clipwb.trainers.kit.prompted_encoders import PromptedTextEncoder
from clipwb.trainers.kit.templates import CUSTOM_TEMPLATES
from tests.trainer_kit import CLASSNAMES, REPO, make_cfg, write_two_class_images

OPTS = ("TRAINER.COOP.N_CTX", 4)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("tiny_two_class"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path):
    def _build(name="KgCoOp", *opts, output_dir=None):
        torch.manual_seed(0)
        cfg = make_cfg(name, tiny_clip_path, data_root, output_dir or tmp_path / name,
                       OPTS + opts)
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


# -- the loss ---------------------------------------------------------------------------
def test_knowledge_guided_loss_by_hand():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # not unit norm: the loss normalises w_clip (the official code divides again)
    handcrafted = torch.tensor([[2.0, 0.0], [3.0, 3.0]])
    expected = 1.0 - (1.0 + 1.0 / math.sqrt(2.0)) / 2.0  # cos = 1 and 1/sqrt(2)
    assert knowledge_guided_loss(text, handcrafted).item() == pytest.approx(expected, abs=1e-7)


def test_knowledge_guided_loss_is_half_the_papers_squared_distance():
    gen = torch.Generator().manual_seed(3)
    text = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    handcrafted = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=-1)
    squared = ((text - handcrafted) ** 2).sum(dim=-1).mean()  # Eq. (5): mean ||w - w_clip||^2
    assert knowledge_guided_loss(text, handcrafted).item() == pytest.approx(
        squared.item() / 2, abs=1e-6)
    assert knowledge_guided_loss(text, text).item() == pytest.approx(0.0, abs=1e-6)


def test_kgcoop_templates():
    assert kgcoop_template("DescribableTextures") == "a photo of a {}, a type of texture."
    assert CUSTOM_TEMPLATES["DescribableTextures"] == "{} texture."  # CoOp's differs
    assert all(KGCOOP_TEMPLATES[k] == v for k, v in CUSTOM_TEMPLATES.items()
               if k != "DescribableTextures")
    assert kgcoop_template("ToyShapes") == "a photo of a {}."


def test_handcrafted_features_are_the_float16_clips_encode_text(tiny_clip_path):
    clip_model = load_clip(tiny_clip_path).float()  # a PREC fp32 run's CLIP
    features = handcrafted_text_features(PromptedTextEncoder(clip_model), CLASSNAMES,
                                         "a photo of a {}, a type of pet.")
    reference = load_clip(tiny_clip_path)
    convert_weights(reference)  # the official second CLIP: CLIP's stored float16
    tokens = clip_api.tokenize(["a photo of a red square, a type of pet.",
                                "a photo of a blue circle, a type of pet."])
    with torch.no_grad():
        expected = reference.encode_text(tokens)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    assert features.dtype == torch.float16
    assert torch.equal(features, expected)
    assert clip_model.text_projection.dtype == torch.float32  # the model itself untouched


# -- the trainer ------------------------------------------------------------------------
def test_loss_is_cross_entropy_plus_w_times_the_kg_term(build):
    trainer = build("KgCoOp", "TRAINER.COOP.W", 8.0)
    model = trainer.model
    assert trainer.cfg.TRAINER.COOP.W == 8.0
    images, labels = trainer.parse_batch_train(first_batch(trainer))
    loss, summary = trainer.compute_loss(images, labels)
    output = model.forward_features(images)
    assert model.handcrafted_text_features.shape == output.text_features.shape
    ce = torch.nn.functional.cross_entropy(output.logits, labels)
    w_clip = model.handcrafted_text_features  # float16, divided by its norm again there
    w_clip = (w_clip / w_clip.norm(dim=-1, keepdim=True)).float()
    cos = (output.text_features * w_clip).sum(-1) / (
        output.text_features.norm(dim=-1) * w_clip.norm(dim=-1))
    kg = knowledge_guided_loss(output.text_features, model.handcrafted_text_features)
    assert loss.item() == pytest.approx((ce + 8.0 * kg).item(), rel=1e-6)
    # torch's cosine_similarity of a float32 and a float16 tensor (as the
    # official code calls it) rounds at float16's resolution
    assert kg.item() == pytest.approx(1 - cos.mean().item(), abs=1e-4)
    assert summary["loss"] == loss.item()
    assert "handcrafted_text_features" not in trainer.model.state_dict()


def test_w_zero_is_coop(build):
    kg = build("KgCoOp", "TRAINER.COOP.W", 0.0)
    coop = build("CoOp")
    batch = first_batch(kg)
    assert torch.equal(kg.model.prompt_learner.ctx, coop.model.prompt_learner.ctx)
    images, labels = kg.parse_batch_train(batch)
    assert kg.compute_loss(images, labels)[0].item() == coop.compute_loss(images, labels)[0].item()


def test_training_lowers_the_loss_and_only_the_context_trains(build):
    trainer = build("KgCoOp", "TRAINER.COOP.W", 8.0)
    trainable = sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert trainable == ["prompt_learner.ctx"]
    before = trainer.model.prompt_learner.ctx.detach().clone()
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(5)]
    assert losses[-1] < losses[0], losses
    assert not torch.equal(trainer.model.prompt_learner.ctx, before)


def test_checkpoint_round_trip(build, tmp_path):
    out = tmp_path / "run"
    trainer = build("KgCoOp", output_dir=out)
    trainer.forward_backward(first_batch(trainer))
    trainer.save_model(0, str(out))
    fresh = build("KgCoOp", output_dir=tmp_path / "other")
    assert not torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    fresh.load_model(str(out), epoch=1)
    assert torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)


def test_negative_weight_is_a_config_error(build):
    from clipwb.errors import ConfigError

    with pytest.raises(ConfigError, match="TRAINER.COOP.W"):
        build("KgCoOp", "TRAINER.COOP.W", -1.0)


def test_shipped_configs_have_the_official_values():
    import train

    for name, backbone in (("vit_b16_ep100_ctxv1", "ViT-B/16"), ("rn50_ep100", "RN50")):
        args = train.build_parser().parse_args([
            "--root", "data", "--seed", "1", "--output-dir", "out", "--trainer", "KgCoOp",
            "--config-file", os.path.join(REPO, "configs", "trainers", "KgCoOp", name + ".yaml")])
        cfg = train.setup_cfg(args)
        node = cfg.TRAINER.COOP
        assert (node.N_CTX, node.CTX_INIT, node.CSC, node.W) == (4, "a photo of a", False, 8.0)
        assert cfg.OPTIM.LR == pytest.approx(0.002) and cfg.OPTIM.MAX_EPOCH == 100
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 128
        assert cfg.MODEL.BACKBONE.NAME == backbone


def test_published_average_is_the_official_readmes():
    from clipwb.results import aggregate
    from clipwb.results.published import PUBLISHED_BASE2NEW

    row = PUBLISHED_BASE2NEW["KgCoOp"]
    assert (row.base, row.novel, row.hm) == (80.73, 73.60, 77.00)
    assert aggregate.published_method("KgCoOp") is None  # no per-dataset rows
