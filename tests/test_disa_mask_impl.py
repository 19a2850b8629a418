"""DiSa's two implementations of the masked prompted pass (TRAINER.DISA.MASK_IMPL):
``gather`` (the default: a second prompted pass on the kept patch tokens) and
``batched`` (the full and the masked images in one pass of 2B, the dropped
patches masked out of the attention by a key padding mask) give the same
masked features, losses and prompt gradients (tiny CLIP, CPU, fp32)."""
import pytest
import torch

from clipwb.engine import build_trainer, get_cfg_default
from clipwb.errors import ConfigError
import clipwb.trainers
from clipwb.trainers.disa.trainer import DiSa
from clipwb.trainers.kit.precision import PREC_ON_CPU_ENV, autocast_context
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES
from tests.trainer_kit import make_cfg, write_two_class_images

ATOL = 1e-5
TRAINER_OPTS = ("TRAINER.DISA.GPA_MEAN", 2)
# the masking switches each equality is checked under (the default first)
VARIANTS = {
    "default": (),
    "zero_pixels": ("TRAINER.DISA.MASK_MODE", "zero_pixels"),
    "frozen_masked": ("TRAINER.DISA.CIR_FROZEN_INPUT", "masked", "TRAINER.DISA.MASK_RATIO",
                      0.5),
    "sampled_random": ("TRAINER.DISA.SALIENCY", "random", "TRAINER.DISA.MASK_SELECTION",
                       "sample", "TRAINER.DISA.CIR_KL", "symmetric"),
    "cls_attention": ("TRAINER.DISA.SALIENCY", "cls_attention"),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("tiny_disa_mask"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(DiSa, "teacher_templates", PROMPTSRC_TEMPLATES[:3])

    def _build(impl, *opts):
        torch.manual_seed(0)
        cfg = make_cfg("DiSa", tiny_clip_path, data_root, tmp_path / impl,
                       TRAINER_OPTS + ("TRAINER.DISA.MASK_IMPL", impl) + tuple(opts))
        trainer = build_trainer(cfg)
        trainer.class_prototypes()
        trainer.set_model_mode("train")
        return trainer
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


def loss_and_grads(trainer, batch, seed=1):
    """The step's loss, summary and the prompts' gradients (no update)."""
    images, labels = trainer.parse_batch_train(batch)
    torch.manual_seed(seed)  # the random saliency / sampled drops draw the same numbers
    loss, summary = trainer.compute_loss(images, labels)
    learner = trainer.model.prompt_learner
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [learner.get_parameter(n) for n in names])
    return loss, summary, dict(zip(names, grads))


def record_prompted_passes(trainer):
    """Per prompted image pass: (batch size, patch tokens kept or None, masked or not)."""
    encoder = trainer.model.image_encoder
    original = encoder.encode
    calls = []

    def encode(image, shallow_prompts=None, deep_prompts=None, keep_index=None, **kwargs):
        if shallow_prompts is not None:
            kept = None if keep_index is None else keep_index.shape[1]
            calls.append((image.shape[0], kept, kwargs.get("masked_patches") is not None))
        return original(image, shallow_prompts, deep_prompts, keep_index, **kwargs)

    encoder.encode = encode
    return calls


def test_default_is_gather():
    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    assert cfg.TRAINER.DISA.MASK_IMPL == "gather"


def test_batched_runs_one_prompted_image_pass_of_twice_the_batch(build):
    gather, batched = build("gather"), build("batched")
    batch = first_batch(gather)
    passes = {}
    for name, trainer in (("gather", gather), ("batched", batched)):
        calls = record_prompted_passes(trainer)
        trainer.compute_loss(*trainer.parse_batch_train(batch))
        passes[name] = calls
    assert passes == {"gather": [(4, None, False), (4, 11, False)],
                      "batched": [(8, None, True)]}


def test_same_masked_features(build):
    gather, batched = build("gather"), build("batched")
    images, labels = gather.parse_batch_train(first_batch(gather))
    prompts = gather.model.prompt_learner()
    frozen = gather.frozen_pass(images)
    masked = gather.masked_view(images, labels, frozen)
    assert masked.keep.shape == (4, 11)
    expected = gather.model.encode_images(masked.images, prompts.vision, prompts.vision_deep,
                                          masked.keep)
    full = gather.model.encode_images(images, prompts.vision, prompts.vision_deep)
    # the same prompts and mask through the batched trainer's one pass
    both = batched.encode_full_and_masked(images, masked, prompts)
    assert torch.allclose(both[0], full, atol=ATOL)
    assert torch.allclose(both[1], expected, atol=ATOL)
    assert not torch.allclose(expected, full, atol=1e-3)  # the mask changes the feature


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_loss_and_prompt_gradients(build, variant):
    # PREC fp32_exact: under fp32 the prompts' per-sample gradients are
    # rounded to float16 (the forks' arithmetic), and the two passes sum them
    # over batches of different sizes
    exact = ("TRAINER.DISA.PREC", "fp32_exact") + VARIANTS[variant]
    gather, batched = build("gather", *exact), build("batched", *exact)
    batch = first_batch(gather)
    loss_g, summary_g, grads_g = loss_and_grads(gather, batch)
    loss_b, summary_b, grads_b = loss_and_grads(batched, batch)
    assert summary_g.keys() == summary_b.keys() and "loss_cir" in summary_b
    for key in summary_g:
        assert summary_b[key] == pytest.approx(summary_g[key], abs=ATOL), key
    assert torch.allclose(loss_b, loss_g, atol=ATOL)
    assert grads_g.keys() == grads_b.keys() and len(grads_g) > 2  # text, vision, deep prompts
    for name in grads_g:
        assert grads_g[name].abs().sum() > 0, name
        assert torch.allclose(grads_b[name], grads_g[name], atol=ATOL), name


def test_same_training_steps(build):
    """Three whole steps (forward, backward, SGD update) log the same losses
    and leave the same prompts."""
    gather, batched = build("gather"), build("batched")
    batch = first_batch(gather)
    for trainer in (gather, batched):
        trainer.batch_idx, trainer.num_batches = 0, 1000
    for _ in range(3):
        logged = [trainer.forward_backward(batch) for trainer in (gather, batched)]
        for key in logged[0]:
            assert logged[1][key] == pytest.approx(logged[0][key], abs=ATOL), key
    params_b = dict(batched.model.prompt_learner.named_parameters())
    for name, param in gather.model.prompt_learner.named_parameters():
        assert torch.allclose(params_b[name], param, atol=ATOL), name


def test_without_the_masked_pass_batched_changes_nothing(build):
    trainer = build("batched", "TRAINER.DISA.CIR_MASKED", False)
    calls = record_prompted_passes(trainer)
    trainer.compute_loss(*trainer.parse_batch_train(first_batch(trainer)))
    assert calls == [(4, None, False)]
    trainer = build("batched", "TRAINER.DISA.CIR_LOSS_WEIGHT", 0.0)
    calls = record_prompted_passes(trainer)
    trainer.compute_loss(*trainer.parse_batch_train(first_batch(trainer)))
    assert calls == [(4, None, False)]


def test_bad_value_names_the_key(build):
    with pytest.raises(ConfigError, match="TRAINER.DISA.MASK_IMPL = 'fused' is not valid"):
        build("fused")


@pytest.mark.parametrize("prec", ["fp16", "amp", "bf16"])
def test_half_precision_masked_features_agree(build, prec, monkeypatch):
    """The key padding mask is boolean, so it works under fp16 weights and
    autocast alike; the two implementations agree to the precision's rounding."""
    monkeypatch.setenv(PREC_ON_CPU_ENV, "1")
    gather, batched = (build(impl, "TRAINER.DISA.PREC", prec) for impl in ("gather", "batched"))
    weights = torch.float16 if prec == "fp16" else torch.float32
    assert gather.model.image_encoder.dtype == batched.model.image_encoder.dtype == weights
    assert gather.precision == batched.precision == prec
    batch = first_batch(gather)
    losses = {}
    for name, trainer in (("gather", gather), ("batched", batched)):
        with autocast_context(trainer.precision, trainer.device):
            loss, summary, grads = loss_and_grads(trainer, batch)
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
        losses[name] = summary
    assert losses["gather"]["loss_cir"] > 5e-4
    rel = 5e-2 if prec == "bf16" else 1e-2  # bf16 keeps 8 bits of mantissa
    for key in ("loss_cir", "loss"):
        assert losses["batched"][key] == pytest.approx(losses["gather"][key], rel=rel), key
