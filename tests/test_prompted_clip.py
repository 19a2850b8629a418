"""PromptedCLIP: logits from prompts, and text features computed once per
evaluation for image-independent prompts."""
import pytest
import torch

from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.prompt_learners import PromptLearner
from clipwb.trainers.kit.prompted_clip import PromptedCLIP, text_feature_cache

CLASSES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    return load_clip(tiny_clip_path)


def count_text_calls(model):
    calls = []
    original = model.text_encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.text_encoder.forward = counting
    return calls


def test_logits_are_scaled_cosines(clip_model):
    model = PromptedCLIP(clip_model, PromptLearner(clip_model, CLASSES, n_ctx=2))
    out = model.forward_features(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 3)
    assert torch.allclose(out.image_features.norm(dim=-1), torch.ones(2))
    assert torch.allclose(out.text_features.norm(dim=-1), torch.ones(3))
    scale = clip_model.logit_scale.exp()
    assert torch.allclose(out.logits, scale * out.image_features @ out.text_features.t())


def test_text_features_are_encoded_once_per_evaluation(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=2, text_depth=2, vision_n_ctx=2,
                            vision_depth=2)
    model = PromptedCLIP(clip_model, learner)
    calls = count_text_calls(model)
    batches = [torch.randn(2, 3, 32, 32) for _ in range(3)]
    with torch.no_grad():
        reference = [model(b) for b in batches]
    assert len(calls) == 3  # no cache outside the context
    with text_feature_cache(model), torch.no_grad():
        cached = [model(b) for b in batches]
    assert len(calls) == 4
    for a, b in zip(reference, cached):
        assert torch.allclose(a, b, atol=1e-6)
    # the cache is dropped on exit: new prompts are seen at the next evaluation
    with torch.no_grad():
        learner.ctx.add_(torch.randn_like(learner.ctx))
    with text_feature_cache(model), torch.no_grad():
        changed = model(batches[0])
    assert len(calls) == 5
    assert not torch.allclose(changed, reference[0])


def test_no_cache_while_training_or_for_conditional_prompts(clip_model):
    model = PromptedCLIP(clip_model, PromptLearner(clip_model, CLASSES, n_ctx=2))
    calls = count_text_calls(model)
    with text_feature_cache(model):  # gradients on: training, never cached
        model(torch.randn(1, 3, 32, 32)).sum().backward()
        model(torch.randn(1, 3, 32, 32))
    assert len(calls) == 2
    conditional = PromptedCLIP(clip_model, PromptLearner(clip_model, CLASSES, n_ctx=2,
                                                         conditional=True))
    calls = count_text_calls(conditional)
    with text_feature_cache(conditional), torch.no_grad():
        conditional(torch.randn(2, 3, 32, 32))
        conditional(torch.randn(2, 3, 32, 32))
    assert len(calls) == 2  # image-conditioned: once per batch, batched over images


def test_half_precision_clip_with_float32_master_prompts(tiny_clip_path):
    from clip.model import convert_weights

    clip_half = load_clip(tiny_clip_path)
    convert_weights(clip_half)  # PREC fp16: frozen weights in half precision
    learner = PromptLearner(clip_half, CLASSES, n_ctx=2, text_depth=2, vision_n_ctx=2,
                            vision_depth=2, coupled=False)
    model = PromptedCLIP(clip_half, learner)
    out = model.forward_features(torch.randn(2, 3, 32, 32))
    assert model.image_encoder.dtype == model.text_encoder.dtype == torch.float16
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all()
    out.logits.logsumexp(-1).sum().backward()
    for name, param in learner.named_parameters():
        assert param.dtype == torch.float32 and param.grad is not None, name
        assert param.grad.dtype == torch.float32
