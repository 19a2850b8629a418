"""Unit tests of the CLIP prompt trainers on a tiny CLIP and a 2-class dataset
(full ``train.py`` runs are tested elsewhere)."""
import pytest
import torch
from clip.model import CLIP

import clipwb.trainers
from clipwb.engine import build_trainer, get_cfg_default
from clipwb.errors import ConfigError, MissingFileError, UserInputError
from tests.trainer_kit import CLASSNAMES, make_cfg, write_two_class_images
from clipwb.trainers.kit.frozen_clip import class_text_features
from clipwb.trainers.kit.precision import autocast_context, make_grad_scaler, resolve_precision
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES

PROMPT_TRAINERS = ["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC"]
# this module's settings, after trainer_kit.make_cfg's common ones
TEST_BATCH_SIZE = 2
TRAINER_OPTS = ("TRAINER.COOP.N_CTX", 4, "TRAINER.COCOOP.N_CTX", 4)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("tiny_two_class"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path):
    def _build(name, *opts, clip_path=None, output_dir=None):
        torch.manual_seed(0)  # prompt initialisation
        cfg = make_cfg(name, clip_path or tiny_clip_path, data_root,
                       output_dir or tmp_path / ("out_" + name), TRAINER_OPTS + opts,
                       test_batch_size=TEST_BATCH_SIZE)
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


def count_calls(module):
    calls = []
    original = module.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    module.forward = counting
    return calls


@pytest.mark.parametrize("name", PROMPT_TRAINERS)
def test_trainer_builds_and_training_lowers_the_loss(build, name):
    trainer = build(name)
    assert trainer.get_model_names() == ["prompt_learner"]
    learner = trainer.model.prompt_learner
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    assert all(p.dtype == torch.float32 for p in learner.parameters())
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(5)]
    assert losses[-1] < losses[0], losses
    assert any(not torch.equal(p, before[n]) for n, p in learner.named_parameters())
    frozen = [p for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


@pytest.mark.parametrize("name", PROMPT_TRAINERS)
def test_text_features_once_per_evaluation(build, name):
    trainer = build(name)
    calls = count_calls(trainer.model.text_encoder)
    n_batches = len(trainer.test_loader)
    assert n_batches == 4
    trainer.test()
    per_test = n_batches if name == "CoCoOp" else 1  # CoCoOp: image-conditioned
    assert len(calls) == per_test
    trainer.forward_backward(first_batch(trainer))  # training resumes
    assert len(calls) == per_test + 1
    trainer.test()
    assert len(calls) == 2 * per_test + 1


def test_zero_shot_trainers(build, capsys):
    single = build("ZeroshotCLIP")
    assert single.get_model_names() == []
    assert not any(p.requires_grad for p in single.model.parameters())
    ensemble = build("ZeroshotCLIP2")
    assert "Prompt ensembling (n=8)" in capsys.readouterr().out
    assert single.model.text_features.shape == ensemble.model.text_features.shape == (2, 64)
    assert not torch.allclose(single.model.text_features, ensemble.model.text_features)
    images = next(iter(single.test_loader))["img"]
    clip_model = single.model.image_encoder.visual
    with torch.no_grad():
        feats = torch.nn.functional.normalize(clip_model(images), dim=-1)
        expected = single.model.logit_scale.exp() * feats @ single.model.text_features.t()
        assert torch.allclose(single.model_inference(images), expected, atol=1e-5)
    single.load_model("")  # --model-dir may be empty
    single.load_model("anything")  # nothing to load
    assert isinstance(single.test(), float)
    assert isinstance(ensemble.train(), float)  # evaluates instead of training


def test_promptsrc_frozen_text_features_are_precomputed(build):
    trainer = build("PromptSRC")
    teacher = trainer.model.zero_shot
    expected = class_text_features(trainer.model.text_encoder, CLASSNAMES, PROMPTSRC_TEMPLATES,
                                   normalize_each=False)
    assert torch.allclose(teacher.text_features, expected, atol=1e-6)
    calls = count_calls(trainer.model.text_encoder)
    summary = trainer.forward_backward(first_batch(trainer))
    assert len(calls) == 1  # only the prompted text, not the 60 templates
    parts = ["loss_ce", "loss_scl_text", "loss_scl_image", "loss_scl_logits"]
    assert summary["loss"] == pytest.approx(sum(summary[k] for k in parts), rel=1e-4)


def test_promptsrc_gpa_replaces_the_prompts_after_the_last_epoch(build, tmp_path):
    trainer = build("PromptSRC", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1,
                    output_dir=tmp_path / "gpa")
    learner = trainer.model.prompt_learner
    snapshots = []
    for epoch in range(2):
        trainer.epoch = epoch
        with torch.no_grad():
            learner.ctx.fill_(float(epoch + 1))
        snapshots.append(learner.ctx.detach().clone())
        trainer.after_epoch()
    w = trainer.gpa.weights
    assert w[1] > w[0]
    assert torch.allclose(learner.ctx, w[0] * snapshots[0] + w[1] * snapshots[1])
    saved = torch.load(tmp_path / "gpa" / "prompt_learner" / "model.pth.tar-2",
                       map_location="cpu", weights_only=False)
    assert torch.allclose(saved["state_dict"]["ctx"], learner.ctx)


def test_checkpoint_round_trip_ignores_class_tokens(build, tmp_path):
    out = tmp_path / "run"
    trainer = build("CoOp", output_dir=out)
    trainer.forward_backward(first_batch(trainer))
    trainer.save_model(0, str(out))
    path = out / "prompt_learner" / "model.pth.tar-1"
    assert path.is_file()
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["state_dict"]["token_prefix"].zero_()  # must not be loaded
    torch.save(checkpoint, path)

    fresh = build("CoOp", output_dir=tmp_path / "other")
    prefix = fresh.model.prompt_learner.token_prefix.clone()
    assert not torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    fresh.load_model(str(out), epoch=1)
    assert torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    assert torch.equal(fresh.model.prompt_learner.token_prefix, prefix)
    with pytest.raises(MissingFileError, match="model.pth.tar-7") as info:
        fresh.load_model(str(out), epoch=7)
    assert "model.pth.tar-1" in str(info.value)  # lists what was saved
    with pytest.raises(MissingFileError, match="model-best.pth.tar"):
        fresh.load_model(str(out))


def test_original_ivlp_checkpoint_layout_loads(build, tmp_path):
    trainer = build("IVLP")
    learner = trainer.model.prompt_learner
    state = {
        "prompt_learner.ctx": torch.full_like(learner.ctx, 0.5),
        "prompt_learner.token_prefix": torch.zeros_like(learner.token_prefix),
        "image_encoder.VPT": torch.full_like(learner.vision_ctx, 0.25),
        "image_encoder.transformer.resblocks.1.VPT_shallow": torch.full_like(
            learner.vision_deep[0], -1.0),
        "text_encoder.transformer.resblocks.1.VPT_shallow": torch.full_like(
            learner.text_deep[0], 2.0),
        "image_encoder.conv1.weight": torch.zeros(1),
    }
    folder = tmp_path / "orig" / "VLPromptLearner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 5}, folder / "model.pth.tar-5")
    trainer.load_model(str(tmp_path / "orig"), epoch=5)
    assert torch.all(learner.ctx == 0.5) and torch.all(learner.vision_ctx == 0.25)
    assert torch.all(learner.vision_deep[0] == -1.0) and torch.all(learner.text_deep[0] == 2.0)
    assert learner.token_prefix.abs().sum() > 0


def test_config_errors_name_the_key(build):
    with pytest.raises(ConfigError, match="TRAINER.COOP.PREC"):
        build("CoOp", "TRAINER.COOP.PREC", "fp64")
    with pytest.raises(ConfigError, match="TRAINER.COOP.CLASS_TOKEN_POSITION"):
        build("CoOp", "TRAINER.COOP.CLASS_TOKEN_POSITION", "left")
    with pytest.raises(ConfigError, match="TRAINER.IVLP.PROMPT_DEPTH_TEXT"):
        build("IVLP", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 0)
    with pytest.raises(ConfigError, match="INPUT.SIZE"):
        build("MaPLe", "INPUT.SIZE", (224, 224))


def test_class_token_position_and_csc_through_the_config(build):
    trainer = build("CoOp", "TRAINER.COOP.CSC", True, "TRAINER.COOP.CLASS_TOKEN_POSITION",
                    "middle")
    learner = trainer.model.prompt_learner
    assert learner.ctx.shape == (2, 4, 64) and learner.class_token_position == "middle"
    losses = [trainer.forward_backward(first_batch(trainer))["loss"] for _ in range(3)]
    assert losses[-1] < losses[0]


def test_precision_modes_on_cpu(capsys):
    assert resolve_precision("fp16", "cpu", "TRAINER.COOP.PREC") == "fp32"
    assert "TRAINER.COOP.PREC = fp16 runs as fp32" in capsys.readouterr().out
    assert resolve_precision("bf16", "cpu", "K") == "fp32"
    assert resolve_precision("fp32", "cpu", "K") == "fp32"
    assert capsys.readouterr().out.count("runs as fp32") == 1
    with pytest.raises(ConfigError, match="K = 'half'"):
        resolve_precision("half", "cpu", "K")
    with autocast_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    assert make_grad_scaler("fp32") is None and make_grad_scaler("fp16") is None


@pytest.fixture(scope="module")
def tiny_resnet_clip_path(tmp_path_factory):
    torch.manual_seed(0)
    model = CLIP(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=2)
    path = tmp_path_factory.mktemp("rn_clip") / "tiny_rn.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def test_resnet_backbone(build, tiny_resnet_clip_path):
    trainer = build("CoCoOp", clip_path=tiny_resnet_clip_path)
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(3)]
    assert losses[-1] < losses[0]
    with pytest.raises(ConfigError, match="ViT"):
        build("IVLP", clip_path=tiny_resnet_clip_path)


def test_checkpoint_of_another_trainer_is_rejected(build, tmp_path):
    out = tmp_path / "coop_run"
    build("CoOp", output_dir=out).save_model(0, str(out))
    cocoop = build("CoCoOp", "TRAINER.COCOOP.N_CTX", 4)
    with pytest.raises(UserInputError, match="meta_net"):
        cocoop.load_model(str(out), epoch=1)
    ivlp = build("IVLP")
    with pytest.raises(UserInputError, match="does not fit"):
        ivlp.load_model(str(out), epoch=1)  # ctx of 4 tokens vs 2


def test_resuming_checkpoints_of_another_config_is_one_clear_error(build, tmp_path):
    """On either engine (the mixin covers real Dassl): the run folder is
    named, and its checkpoints are left as they are."""
    out = tmp_path / "coop_run"
    build("CoOp", output_dir=out).save_model(0, str(out))  # ctx of 4 tokens
    saved = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    wider = build("CoOp", "TRAINER.COOP.N_CTX", 8, output_dir=tmp_path / "other")
    with pytest.raises(UserInputError, match=r"Cannot resume from .*coop_run.*new --output-dir"):
        wider.resume_model_if_exist(str(out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == saved


def test_extend_cfg_adds_the_original_keys_idempotently():
    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    # CoOp's keys, KgCoOp's W (its official code keeps it in TRAINER.COOP) and
    # ALPHA (DePT's KgCoOp configs carry it; unused)
    assert dict(cfg.TRAINER.COOP) == {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
                                      "CLASS_TOKEN_POSITION": "end", "W": 1.0, "ALPHA": 1.0}
    assert dict(cfg.TRAINER.COCOOP) == {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"}
    assert dict(cfg.TRAINER.MAPLE) == {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                       "PROMPT_DEPTH": 9}
    assert dict(cfg.TRAINER.IVLP) == {"N_CTX_VISION": 2, "N_CTX_TEXT": 2,
                                      "CTX_INIT": "a photo of a", "PREC": "fp16",
                                      "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}
    src = cfg.TRAINER.PROMPTSRC
    assert (src.N_CTX_VISION, src.N_CTX_TEXT, src.PROMPT_DEPTH_VISION, src.PROMPT_DEPTH_TEXT) == \
        (4, 4, 9, 9)
    assert (src.TEXT_LOSS_WEIGHT, src.IMAGE_LOSS_WEIGHT, src.GPA_MEAN, src.GPA_STD) == \
        (25, 10, 15, 1)
    cfg.TRAINER.COOP.N_CTX = 4
    clipwb.trainers.extend_cfg(cfg)
    assert cfg.TRAINER.COOP.N_CTX == 4
