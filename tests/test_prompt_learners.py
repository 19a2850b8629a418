"""PromptLearner: CoOp layouts, CoCoOp batching, IVLP / MaPLe prompts."""
import pytest
import torch
from clip import clip as clip_api

from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.prompt_learners import (PromptLearner, cocoop_learner, convert_legacy_state_dict,
                                      init_context)
from clipwb.trainers.kit.prompted_clip import PromptedCLIP

CLASSES = ["cat", "golden_retriever", "sea lion"]


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    return load_clip(tiny_clip_path)


def embed(clip_model, texts):
    with torch.no_grad():
        return clip_model.token_embedding(clip_api.tokenize(texts))


def test_generic_context_end_layout(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=4)
    texts = ["X X X X " + c.replace("_", " ") + "." for c in CLASSES]
    reference = embed(clip_model, texts)
    with torch.no_grad():
        learner.ctx.copy_(embed(clip_model, ["X X X X"])[0, 1:5])
        prompts = learner().text
    # with the context set to the "X" embeddings the prompt is the embedded text
    assert prompts.shape == (3, 77, 64)
    assert torch.equal(prompts, reference)
    assert torch.equal(learner.tokenized_prompts, clip_api.tokenize(texts))
    assert learner.ctx.dtype == torch.float32 and learner.ctx.requires_grad


def test_ctx_init_words_coop_policy(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=16, ctx_init="a_photo of a")
    assert learner.n_ctx == 4  # CoOp: the number of words
    reference = embed(clip_model, ["a photo of a " + c.replace("_", " ") + "." for c in CLASSES])
    with torch.no_grad():
        assert torch.equal(learner().text, reference)


def test_ctx_init_fixed_policy_keeps_n_ctx(clip_model):
    vectors, prefix, n_ctx = init_context(clip_model, 2, "a photo of a", policy="fixed")
    assert (prefix, n_ctx, vectors.shape) == ("a photo of a", 2, (2, 64))
    assert torch.equal(vectors, embed(clip_model, ["a photo"])[0, 1:3])
    # more context tokens than init words: random init, "X" placeholders
    vectors, prefix, n_ctx = init_context(clip_model, 6, "a photo of a", policy="fixed")
    assert (prefix, n_ctx) == ("X X X X X X", 6)
    assert vectors.std() < 0.05
    learner = PromptLearner(clip_model, CLASSES, n_ctx=2, ctx_init="a photo of a",
                            init_policy="fixed")
    with torch.no_grad():
        assert torch.equal(learner().text, embed(
            clip_model, ["a photo of a " + c.replace("_", " ") + "." for c in CLASSES]))


def test_class_specific_context(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=3, csc=True)
    assert learner.ctx.shape == (3, 3, 64)
    prompts = learner().text
    for c in range(3):
        assert torch.equal(prompts[c, 1:4], learner.ctx[c])


@pytest.mark.parametrize("position", ["middle", "front"])
def test_class_token_positions(clip_model, position):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=4, class_token_position=position)
    prompts = learner().text
    names = [c.replace("_", " ") for c in CLASSES]
    with torch.no_grad():
        for c, name in enumerate(names):
            name_len = len(clip_api._tokenizer.encode(name))
            sos = learner.token_prefix[c]
            cls = learner.token_suffix[c, :name_len]
            rest = learner.token_suffix[c, name_len:]
            ctx = learner.ctx
            if position == "front":
                expected = torch.cat([sos, cls, ctx, rest])
            else:
                expected = torch.cat([sos, ctx[:2], cls, ctx[2:], rest])
            assert torch.equal(prompts[c], expected)
    # the EOT token stays where the tokenized prompt says
    eot = learner.tokenized_prompts.argmax(-1)
    eot_embedding = clip_model.token_embedding.weight[clip_api._tokenizer.encoder["<|endoftext|>"]]
    for c in range(3):
        assert torch.equal(prompts[c, eot[c]], eot_embedding)
    prompts.sum().backward()
    assert learner.ctx.grad is not None


def test_cocoop_batched_equals_per_image(clip_model):
    from clipwb.engine import get_cfg_default
    import clipwb.trainers

    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    cfg.TRAINER.COCOOP.N_CTX = 4
    torch.manual_seed(0)
    model = PromptedCLIP(clip_model, cocoop_learner(clip_model, CLASSES, cfg.TRAINER.COCOOP))
    images = torch.randn(4, 3, 32, 32)
    batched = model(images)
    assert batched.shape == (4, 3)
    with torch.no_grad():
        single = torch.cat([model(images[i:i + 1]) for i in range(4)])
        model.text_chunk = 5  # one image per text-encoder call
        chunked = model(images)
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(batched, chunked, atol=1e-5)
    batched.logsumexp(-1).sum().backward()
    learner = model.prompt_learner
    assert learner.meta_net.linear1.weight.grad.abs().sum() > 0
    assert learner.ctx.grad.abs().sum() > 0
    # the meta-net shifts the context per image
    shift = learner.context_shift(torch.randn(2, 64))
    prompts = learner(torch.randn(2, 64)).text
    assert shift.shape == (2, 64) and prompts.shape == (2, 3, 77, 64)


def test_ivlp_prompts(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=2, ctx_init="a photo of a",
                            init_policy="fixed", text_depth=2, vision_n_ctx=3, vision_depth=2)
    prompts = learner()
    assert prompts.vision.shape == (3, 64)
    assert [p.shape for p in prompts.vision_deep] == [(3, 64)]
    assert [p.shape for p in prompts.text_deep] == [(2, 64)]
    # depth beyond the 2 layers of the tiny CLIP is clamped; depth 0: no vision prompts
    deep = PromptLearner(clip_model, CLASSES, n_ctx=2, text_depth=9, vision_n_ctx=2,
                         vision_depth=9)
    assert len(deep.text_deep) == 1 and len(deep.vision_deep) == 1
    text_only = PromptLearner(clip_model, CLASSES, n_ctx=2, text_depth=1, vision_depth=0)
    assert text_only().vision is None and text_only().text_deep is None


def test_maple_coupling(clip_model):
    learner = PromptLearner(clip_model, CLASSES, n_ctx=2, ctx_init="a photo of a",
                            init_policy="fixed", text_depth=2, coupled=True)
    prompts = learner()
    assert prompts.vision.shape == (2, 64)
    assert torch.allclose(prompts.vision, learner.proj(learner.ctx))
    assert len(prompts.text_deep) == len(prompts.vision_deep) == 1
    assert torch.allclose(prompts.vision_deep[0], learner.deep_proj[0](learner.text_deep[0]))
    # the vision side trains the text prompts through the projections
    model = PromptedCLIP(clip_model, learner)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    for name in ("ctx", "text_deep.0", "proj.weight", "deep_proj.0.weight"):
        assert dict(learner.named_parameters())[name].grad.abs().sum() > 0, name


def test_legacy_checkpoint_names_are_mapped():
    t = torch.zeros(1)
    ivlp = {
        "prompt_learner.ctx": t,
        "prompt_learner.token_prefix": t,
        "image_encoder.VPT": t,
        "image_encoder.transformer.resblocks.1.VPT_shallow": t,
        "text_encoder.transformer.resblocks.3.VPT_shallow": t,
        "image_encoder.conv1.weight": t,
        "prompt_learner.ZS_image_encoder.conv1.weight": t,
    }
    assert set(convert_legacy_state_dict(ivlp)) == {
        "ctx", "token_prefix", "vision_ctx", "vision_deep.0", "text_deep.2"}
    maple = {"prompt_learner.compound_prompts_text.0": t,
             "prompt_learner.compound_prompt_projections.0.weight": t,
             "prompt_learner.proj.bias": t}
    assert set(convert_legacy_state_dict(maple)) == {
        "text_deep.0", "deep_proj.0.weight", "proj.bias"}
    coop = {"ctx": t, "meta_net.linear1.weight": t}
    assert convert_legacy_state_dict(coop) == coop
