"""The kit's official arithmetic (docs/METHODS.md, "The baselines against
their official code"): draws while CLIP is built, float16 rounding of
prompts, full sequences, PREC resolution, PromptSRC's teacher text features,
GPA and L_SCL in the official dtypes. Each against a hand computation on
the tiny CLIP; the whole against the official code is
tests/test_official_draws.py."""
import pytest
import torch
import torch.nn.functional as F
from clip import clip as clip_api
from clip.model import CLIP

from clipwb.trainers.kit.clip_loader import build_clip_from_state_dict
from clipwb.trainers.kit.frozen_clip import teacher_text_features
from clipwb.trainers.kit.initial_draws import (ConstructionDraws, clip_dimensions,
                                               consume_clip_construction, normal_prompt)
from clipwb.trainers.kit.precision import (learnable_dtype, resolve_precision, rounds_prompts,
                                           PROMPT_PRECISIONS)
from clipwb.trainers.kit.prompt_learners import PromptLearner
from clipwb.trainers.kit.prompted_clip import PromptedCLIP, set_arithmetic
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder
from clipwb.trainers.kit.scl_losses import GaussianPromptAggregation, SCLTerms, scl_text_loss
from tests.tiny_clip import TINY_CLIP_KWARGS, build_tiny_clip


@pytest.fixture(scope="module")
def state_dict():
    return build_tiny_clip().state_dict()


def test_construction_draws_are_taken_where_the_fork_draws_them(state_dict):
    """The fork's order, written out by hand: CLIP built module by module,
    with the vision prompt drawn after conv1's initialisation and block i's
    deep prompt right after block i's weights (1 <= i < depth). The hooks on
    the stock construction must give the same tensors and generator state."""
    from clip import model as stock
    from torch import nn

    draws = ConstructionDraws(vision_n_ctx=2, vision_depth=2, text_n_ctx=3, text_depth=2)
    torch.manual_seed(7)
    with draws.recording():
        build_clip_from_state_dict(state_dict)
    after = torch.get_rng_state()

    k = TINY_CLIP_KWARGS
    width, text_width, embed = k["vision_width"], k["transformer_width"], k["embed_dim"]
    torch.manual_seed(7)
    nn.Conv2d(3, width, kernel_size=k["vision_patch_size"], stride=k["vision_patch_size"],
              bias=False)
    vision_ctx = normal_prompt(2, width)
    torch.randn(width), torch.randn(17, width)  # class and positional embeddings
    vision_deep = []
    for i in range(k["vision_layers"]):
        stock.ResidualAttentionBlock(width, width // 64)
        if 1 <= i < 2:
            vision_deep.append(normal_prompt(2, width))
    torch.randn(width, embed)  # proj
    text_deep = []
    blocks = []
    for i in range(k["transformer_layers"]):
        blocks.append(stock.ResidualAttentionBlock(text_width, k["transformer_heads"]))
        if 1 <= i < 2:
            text_deep.append(normal_prompt(3, text_width))
    embedding = nn.Embedding(k["vocab_size"], text_width)
    # CLIP.initialize_parameters()
    nn.init.normal_(embedding.weight, std=0.02)
    nn.init.normal_(torch.empty(k["context_length"], text_width), std=0.01)
    for block in blocks:
        for weight in (block.attn.in_proj_weight, block.attn.out_proj.weight,
                       block.mlp.c_fc.weight, block.mlp.c_proj.weight):
            nn.init.normal_(weight, std=0.1)
    nn.init.normal_(torch.empty(text_width, embed), std=0.1)

    assert torch.equal(draws.vision_ctx, vision_ctx)
    assert len(draws.vision_deep) == 1 and torch.equal(draws.vision_deep[0], vision_deep[0])
    assert len(draws.text_deep) == 1 and torch.equal(draws.text_deep[0], text_deep[0])
    assert torch.equal(torch.get_rng_state(), after)


def test_no_prompts_no_extra_draws_and_consumption_equals_a_build(state_dict):
    torch.manual_seed(3)
    with ConstructionDraws(0, 0, 2, 1).recording() as draws:
        model = build_clip_from_state_dict(state_dict)
    assert draws.vision_ctx is None and draws.vision_deep == [] and draws.text_deep == []
    plain = torch.get_rng_state()
    torch.manual_seed(3)
    build_clip_from_state_dict(state_dict)
    assert torch.equal(torch.get_rng_state(), plain)
    # consuming two constructions moves the generator as two plain builds do
    torch.manual_seed(5)
    consume_clip_construction(model, times=2)
    consumed = torch.get_rng_state()
    torch.manual_seed(5)
    CLIP(**clip_dimensions(model))
    CLIP(**clip_dimensions(model))
    assert torch.equal(torch.get_rng_state(), consumed)
    assert clip_dimensions(model) == dict(TINY_CLIP_KWARGS, transformer_heads=1)


def test_learner_takes_the_drawn_prompts_and_maple_draws_proj_first(state_dict):
    model = build_clip_from_state_dict(state_dict)
    draws = ConstructionDraws(2, 2, 2, 2)
    torch.manual_seed(0)
    with draws.recording():
        build_clip_from_state_dict(state_dict)
    learner = PromptLearner(model, ["a", "b"], n_ctx=2, init_policy="fixed", text_depth=2,
                            vision_n_ctx=2, vision_depth=2, drawn=draws)
    assert torch.equal(learner.vision_ctx, draws.vision_ctx)
    assert torch.equal(learner.vision_deep[0], draws.vision_deep[0])
    assert torch.equal(learner.text_deep[0], draws.text_deep[0])
    # MaPLe: ctx, proj, deep text prompts, one projection cloned
    torch.manual_seed(1)
    maple = PromptLearner(model, ["a", "b"], n_ctx=2, ctx_init="a photo of a",
                          init_policy="fixed", text_depth=2, coupled=True)
    torch.manual_seed(1)
    proj = torch.nn.Linear(64, 64)
    deep = normal_prompt(2, 64)
    single = torch.nn.Linear(64, 64)
    assert torch.equal(maple.proj.weight, proj.weight) and torch.equal(maple.proj.bias, proj.bias)
    assert torch.equal(maple.text_deep[0], deep)
    assert torch.equal(maple.deep_proj[0].weight, single.weight)


def test_precision_modes_resolve_and_name_their_rules(monkeypatch):
    monkeypatch.delenv("PREC_ON_CPU", raising=False)
    assert set(PROMPT_PRECISIONS) >= {"fp16", "fp32", "fp16_master", "fp32_exact"}
    assert resolve_precision("fp16", "cpu", "K", PROMPT_PRECISIONS) == "fp32"
    assert resolve_precision("fp16_master", "cpu", "K", PROMPT_PRECISIONS) == "fp32_exact"
    assert resolve_precision("fp32_exact", "cpu", "K", PROMPT_PRECISIONS) == "fp32_exact"
    monkeypatch.setenv("PREC_ON_CPU", "1")
    assert resolve_precision("fp16_master", "cpu", "K", PROMPT_PRECISIONS) == "fp16_master"
    assert learnable_dtype("fp16") == torch.float16
    assert learnable_dtype("fp16_master") == learnable_dtype("fp32") == torch.float32
    assert rounds_prompts("fp32") and not rounds_prompts("fp32_exact")


def test_fp32_rounding_applies_to_deep_and_vision_prompts_not_the_context(state_dict):
    model = build_clip_from_state_dict(state_dict)
    text, image = PromptedTextEncoder(model), PromptedImageEncoder(model)
    torch.manual_seed(0)
    prompt = torch.randn(2, 64) * 0.1 + 1e-4  # not float16-representable
    x = torch.zeros(10, 3, 64)
    exact = text.insert_prompt(x, prompt)
    set_arithmetic(torch.nn.ModuleList([text, image]), round_prompts=True)
    rounded = text.insert_prompt(x, prompt)
    assert torch.equal(rounded[1:3, 0], prompt.half().float())
    assert not torch.equal(exact, rounded)
    tokens = torch.zeros(3, 5, 64)
    assert torch.equal(image.append_prompts(tokens, prompt)[0, 5:], prompt.half().float())
    assert torch.equal(image.replace_prompts(tokens.permute(1, 0, 2).clone(), prompt)[3:, 0],
                       prompt.half().float())


def test_full_sequences_are_the_stock_encoders_bit_for_bit(state_dict):
    model = build_clip_from_state_dict(state_dict)
    text, image = PromptedTextEncoder(model), PromptedImageEncoder(model)
    set_arithmetic(torch.nn.ModuleList([text, image]), full_sequences=True)
    tokenized = clip_api.tokenize(["a photo of a dog.", "a red square on a plain background."])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(text.encode_text(tokenized), model.encode_text(tokenized))
        assert torch.equal(image(images), model.encode_image(images))


def test_teacher_text_features_are_the_official_float32_mean(state_dict):
    model = build_clip_from_state_dict(state_dict)
    templates = ["a photo of a {}.", "a drawing of the {}.", "{}"]
    names = ["red square", "blue circle"]
    with torch.no_grad():
        by_hand = torch.cat([model.encode_text(clip_api.tokenize(
            [t.format(n) for n in names])).unsqueeze(1) for t in templates], dim=1).mean(dim=1)
    by_hand = by_hand / by_hand.norm(dim=-1, keepdim=True)
    assert torch.equal(teacher_text_features(PromptedTextEncoder(model), names, templates),
                       by_hand)
    # a float16 encoder: the teacher still computes in a float32 copy
    half = build_clip_from_state_dict(state_dict)
    from clip.model import convert_weights

    convert_weights(half)
    features = teacher_text_features(PromptedTextEncoder(half), names, templates)
    assert features.dtype == torch.float32 and half.text_projection.dtype == torch.float16


def test_gpa_sums_each_parameter_in_its_own_dtype():
    module = torch.nn.Module()
    module.half_param = torch.nn.Parameter(torch.tensor([0.1, 0.2], dtype=torch.float16))
    module.full_param = torch.nn.Parameter(torch.tensor([0.1, 0.2]))
    gpa = GaussianPromptAggregation(2, 1, 1)
    gpa.update(module, 0)
    with torch.no_grad():
        module.half_param.add_(0.3)
        module.full_param.add_(0.3)
    gpa.update(module, 1)
    w = gpa.weights
    expected_half = torch.tensor([0.1, 0.2], dtype=torch.float16) * w[0] + (
        torch.tensor([0.1, 0.2], dtype=torch.float16) + 0.3) * w[1]
    assert gpa.state["half_param"].dtype == torch.float16
    assert torch.equal(gpa.state["half_param"], expected_half)
    assert gpa.state["full_param"].dtype == torch.float32


def test_scl_text_term_promotes_like_the_reference_and_sums_in_its_order():
    prompted = torch.tensor([[0.3, -0.2]], dtype=torch.float16)
    frozen = torch.tensor([[0.1, 0.1]])
    loss = scl_text_loss(prompted, frozen, 25.0)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(25 * (abs(0.3 - 0.1) + abs(-0.2 - 0.1)) / 2, abs=1e-3)
    assert torch.equal(loss, F.l1_loss(prompted.float(), frozen) * 25.0)
    a, b, c = torch.tensor(1e8), torch.tensor(1.0), torch.tensor(-1e8)
    assert SCLTerms(text=b, image=c, logits=a).total.item() == (a + b + c).item()


def test_half_features_keep_float16_logits(state_dict):
    model = build_clip_from_state_dict(state_dict)
    from clip.model import convert_weights

    convert_weights(model)
    learner = PromptLearner(model, ["a", "b"], n_ctx=2, param_dtype=torch.float16)
    assert learner.ctx.dtype == torch.float16
    clip = set_arithmetic(PromptedCLIP(model, learner), half_features=True)
    with torch.no_grad():
        output = clip.forward_features(torch.randn(2, 3, 32, 32))
    assert output.logits.dtype == output.image_features.dtype == torch.float16
    scale = model.logit_scale.exp().float()
    assert torch.equal(output.logits, scale * output.image_features @ output.text_features.t())


def test_rounded_prompt_gradient_sums_the_rounded_per_sample_gradients(state_dict):
    """The forks round after expanding (``prompt.expand(B, ...).half()``): each
    sample's gradient is rounded to float16, the sum over the batch is
    float32. Rounding before the expansion would round the sum instead."""
    image = set_arithmetic(PromptedImageEncoder(build_clip_from_state_dict(state_dict)),
                           round_prompts=True)
    prompt = torch.randn(2, 64, requires_grad=True)
    tokens = torch.zeros(3, 5, 64)
    out = image.append_prompts(tokens, prompt)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) * 1e-3
    out.backward(grad)
    assert torch.equal(prompt.grad, grad[:, 5:].half().float().sum(0))
    assert not torch.equal(prompt.grad, grad[:, 5:].sum(0).half().float())
