"""ISP's building blocks on hand-made tensors and the tiny CLIP: the gated
structural modules, the sample-probing formulas, and the zero-gate
equivalence with IVLP."""
import pytest
import torch
import torch.nn.functional as F

import clipwb.trainers
from clipwb.engine import get_cfg_default
from clipwb.errors import ConfigError
from tests.tiny_clip import build_tiny_clip
from clipwb.trainers.isp.trainer import check_isp_keys
from clipwb.trainers.isp.learner import ISPPromptLearner, isp_learner, settings_for_checkpoint
from clipwb.trainers.isp.losses import (probe_weights, sample_difficulty, true_class_probability,
                                 weighted_cross_entropy)
from clipwb.trainers.isp.modules import (CrossStructuralPrompts, LayeredPromptAttention,
                                  SelfStructuralPrompts, ignore_bias)
from clipwb.trainers.kit.prompt_learners import PromptLearner, ivlp_learner
from clipwb.trainers.kit.prompted_clip import PromptedCLIP

CLASSNAMES = ["cat", "golden retriever", "red sports car"]


def isp_node(**overrides):
    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    node = cfg.TRAINER.ISP
    node.PROMPT_DEPTH_TEXT = node.PROMPT_DEPTH_VISION = 2
    for key, value in overrides.items():
        node[key] = value
    return node


# -- modules -------------------------------------------------------------------
def randomised(module, std=0.3, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module


def explicit_attention(attn, layer, prompts, tokens, ignore=None):
    """Block ``layer`` of ``attn`` in the textbook form: every token projected
    to a key and a value (key bias zero), gated, added to the prompts."""
    def split(x):
        return x.reshape(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2)

    q_in = F.layer_norm(prompts, (attn.query_width,), attn.query_norm_weight[layer],
                        attn.query_norm_bias[layer])
    kv = F.layer_norm(tokens, (attn.key_width,), attn.key_norm_weight[layer],
                      attn.key_norm_bias[layer])
    q = split(F.linear(q_in, attn.query_weight[layer], attn.query_bias[layer]))
    k = split(F.linear(kv, attn.key_weight[layer]))
    v = split(F.linear(kv, attn.value_weight[layer], attn.value_bias[layer]))
    mask = None if ignore is None else (~ignore).view(ignore.shape[0], 1, 1, -1)
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    x = x.transpose(1, 2).reshape(prompts.shape[0], prompts.shape[1], -1)
    return prompts + attn.gate[layer] * F.linear(x, attn.out_weight[layer], attn.out_bias[layer])


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_layered_attention_equals_the_explicit_projections(heads):
    """The keys / values are never formed, yet each layer computes (with its
    gradients) the textbook attention of its own parameters."""
    attn = randomised(LayeredPromptAttention(3, query_width=48, key_width=80, width=32,
                                             heads=heads), seed=heads)
    prompts = torch.randn(3, 2, 48)
    tokens = torch.randn(5, 7, 80, requires_grad=True)
    ignore = torch.zeros(5, 7, dtype=torch.bool)
    ignore[0, 5:] = ignore[2, 1:3] = True
    prepared = attn.prepare(prompts).layers()
    for layer in range(3):
        for mask in (None, ignore):
            bias = None if mask is None else ignore_bias(mask)
            fast = attn.attend(prepared[layer], tokens, bias)
            slow = explicit_attention(attn, layer, prompts[layer].expand(5, -1, -1), tokens, mask)
            assert fast.shape == (5, 2, 48)
            assert torch.allclose(fast, slow, atol=1e-3, rtol=1e-4)
            g_fast, = torch.autograd.grad(fast.sum(), tokens, retain_graph=True)
            g_slow, = torch.autograd.grad(slow.sum(), tokens)
            assert torch.allclose(g_fast, g_slow, atol=1e-3, rtol=1e-4)
            assert g_fast.abs().sum() > 0
    # all layers at once (the cross-structural use): layer l attends to tokens[l]
    together = attn(prompts, tokens[:3])
    for layer in range(3):
        expected = explicit_attention(attn, layer, prompts[layer:layer + 1], tokens[layer:layer + 1])
        assert torch.allclose(together[layer], expected[0], atol=1e-3, rtol=1e-4)


def test_one_layer_attention_standardises_tokens_as_layer_norm_does():
    """The one-layer path folds the key LayerNorm into its products: it still
    matches the textbook block for tokens far from zero mean, in the
    encoders' token-major storage (a transposed view) as well."""
    attn = randomised(LayeredPromptAttention(1, query_width=32, key_width=64, width=16,
                                             heads=2), seed=3)
    prompts = torch.randn(1, 3, 32)
    prepared = attn.prepare(prompts).layers()[0]
    token_major = 100 + 0.5 * torch.randn(9, 4, 64)  # [m, B, W]: mean 100, std 0.5
    tokens = token_major.transpose(0, 1)  # [B, m, W] view, as the encoders pass it
    fast = attn.attend(prepared, tokens)
    exact = explicit_attention(attn.double(), 0, prompts[0].double().expand(4, -1, -1),
                               tokens.double())
    assert torch.allclose(fast.double(), exact, atol=1e-4, rtol=1e-4)


def test_zero_gate_is_identity_and_still_learns():
    attn = LayeredPromptAttention(2, 16, 16, width=8, heads=2)
    prompts = torch.randn(2, 2, 16, requires_grad=True)
    tokens = torch.randn(5, 9, 16)
    out = attn.attend(attn.prepare(prompts).layers()[1], tokens)
    assert out.shape == (5, 2, 16)
    assert torch.equal(out, prompts[1].unsqueeze(0).expand(5, -1, -1))
    out.pow(2).sum().backward()
    assert attn.gate.grad[1].abs().item() > 0 and attn.gate.grad[0].item() == 0
    assert attn.query_weight.grad.abs().sum().item() == 0  # gated off at start


def test_ignored_tokens_do_not_reach_the_prompts():
    attn = LayeredPromptAttention(1, 16, 16, width=8)
    with torch.no_grad():
        attn.gate.fill_(1.0)
    prompt, tokens = torch.randn(2, 16), torch.randn(3, 6, 16)
    prepared = attn.prepare(prompt[None]).layers()[0]
    ignore = torch.zeros(3, 6, dtype=torch.bool)
    ignore[:, 4:] = True
    changed = tokens.clone()
    changed[:, 4:] = 3 * torch.randn(3, 2, 16)
    bias = ignore_bias(ignore)
    assert torch.allclose(attn.attend(prepared, tokens, bias), attn.attend(prepared, changed, bias))
    assert not torch.allclose(attn.attend(prepared, tokens), attn.attend(prepared, changed))


def test_self_structural_prompts_are_per_sequence():
    module = SelfStructuralPrompts(token_width=32, num_layers=3, width=16, heads=2)
    assert module.num_layers == 3
    with torch.no_grad():
        module.attn.gate[1] = 1.0
    prompts = torch.randn(3, 4, 32)
    out = module(1, module.prepare(prompts), torch.randn(5, 10, 32))
    assert out.shape == (5, 4, 32)
    assert not torch.allclose(out[0], out[1])  # each sequence gets its own prompt


def test_cross_structural_attention_exchanges_between_widths():
    torch.manual_seed(0)
    module = CrossStructuralPrompts(text_width=32, vision_width=48, num_layers=2, width=16)
    text = [torch.randn(2, 32) for _ in range(3)]
    vision = [torch.randn(3, 48) for _ in range(3)]
    new_text, new_vision = module(text, vision)
    assert all(torch.equal(a, b) for a, b in zip(new_text + new_vision, text + vision))
    for gate in module.gate_parameters():
        gate.data.fill_(0.5)
    new_text, new_vision = module(text, vision)
    assert [t.shape for t in new_text] == [(2, 32)] * 3
    assert [v.shape for v in new_vision] == [(3, 48)] * 3
    assert not torch.allclose(new_text[0], text[0]) and not torch.allclose(new_vision[1], vision[1])
    assert torch.equal(new_text[2], text[2]) and torch.equal(new_vision[2], vision[2])  # layer 2
    # layer 1's text prompts attend to layer 1's vision prompts only
    expected = explicit_attention(module.to_text, 1, text[1][None], vision[1][None])[0]
    assert torch.allclose(new_text[1], expected, atol=1e-5)


def test_cross_structural_linear_mode_is_gated_maple_coupling():
    torch.manual_seed(0)
    module = CrossStructuralPrompts(32, 48, num_layers=2, mode="linear")
    text = [torch.randn(2, 32) for _ in range(2)]
    vision = [torch.randn(2, 48) for _ in range(2)]
    module.gates.data = torch.tensor([0.0, 0.25])
    new_text, new_vision = module(text, vision)
    assert all(torch.equal(a, b) for a, b in zip(new_text, text))
    assert torch.equal(new_vision[0], vision[0])
    expected = vision[1] + 0.25 * (text[1] @ module.coupling[1].weight.t() + module.coupling[1].bias)
    assert torch.allclose(new_vision[1], expected, atol=1e-6)


def legacy_state(attn, prefix, gate_prefix=""):
    """``attn``'s weights in the earlier one-module-per-layer layout."""
    state = {}
    names = {v: k for k, v in LayeredPromptAttention._LEGACY_NAMES.items() if v}
    for layer in range(attn.num_layers):
        for new, old in names.items():
            value = getattr(attn, new)[layer].detach().clone()
            state["{}{}.{}".format(prefix, layer, old)] = value.reshape(1) if new == "gate" else value
        state["{}{}.attn.key.bias".format(prefix, layer)] = torch.randn(attn.width)
    return state


def test_checkpoints_of_the_per_layer_layout_still_load(clip_model):
    source = isp_learner(clip_model, CLASSNAMES, isp_node())
    for module in (source.self_text, source.self_vision, source.cross):
        randomised(module, std=0.2)
    old = {k: v for k, v in source.state_dict().items()
           if not k.startswith(("self_text.", "self_vision.", "cross."))}
    old.update(legacy_state(source.self_text.attn, "self_text.blocks."))
    old.update(legacy_state(source.self_vision.attn, "self_vision.blocks."))
    old.update(legacy_state(source.cross.to_text, "cross.to_text."))
    old.update(legacy_state(source.cross.to_vision, "cross.to_vision."))
    target = isp_learner(clip_model, CLASSNAMES, isp_node())
    target.load_state_dict(old, strict=True)  # no missing or unexpected key
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name


def test_module_errors_name_the_problem():
    with pytest.raises(ConfigError, match="cross_attention, linear"):
        CrossStructuralPrompts(32, 48, 2, mode="graph")
    with pytest.raises(ConfigError, match="module mode 'maple'"):
        CrossStructuralPrompts(32, 48, 2, mode="maple")
    with pytest.raises(ConfigError, match="multiple of the number of heads"):
        LayeredPromptAttention(2, 16, 16, width=30, heads=4)


# -- sample probing ------------------------------------------------------------------
def test_difficulty_from_true_class_probability_by_hand():
    labels = torch.tensor([0, 1])
    frozen = torch.log(torch.tensor([[0.8, 0.2], [0.9, 0.1]]))
    prompted = torch.log(torch.tensor([[0.5, 0.5], [0.4, 0.6]])).requires_grad_()
    assert torch.allclose(true_class_probability(frozen, labels), torch.tensor([0.8, 0.1]))
    d = sample_difficulty(labels, frozen, prompted, "frozen")
    assert torch.allclose(d, torch.tensor([0.2, 0.9]))
    assert torch.allclose(sample_difficulty(labels, frozen, prompted, "prompted"),
                          torch.tensor([0.5, 0.4]))
    product = sample_difficulty(labels, frozen, prompted, "product")
    assert torch.allclose(product, torch.tensor([1 - 0.8 * 0.5, 1 - 0.1 * 0.6]))
    assert not product.requires_grad and product.grad_fn is None


def test_probe_weights_by_hand():
    d = torch.tensor([0.0, 0.5, 1.0])
    linear = probe_weights(d, "linear", alpha=1.0)
    assert torch.allclose(linear, torch.tensor([2 / 3, 1.0, 4 / 3]))
    assert torch.allclose(probe_weights(d, "linear", alpha=2.0), torch.tensor([0.5, 1.0, 1.5]))
    soft = probe_weights(d, "softmax", temperature=0.5)
    e = torch.exp(d / 0.5)
    assert torch.allclose(soft, 3 * e / e.sum())
    for w in (linear, soft):
        assert w.mean().item() == pytest.approx(1.0)
        assert w[0] < w[1] < w[2]
    assert torch.allclose(probe_weights(torch.full((4,), 0.3)), torch.ones(4))
    assert torch.equal(probe_weights(d, alpha=0.0), torch.ones(3))


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0])
    ce = -F.log_softmax(logits.detach(), dim=1)[:, 0]
    assert torch.allclose(weighted_cross_entropy(logits, labels), ce.mean())
    weights = torch.tensor([0.5, 1.5])
    loss = weighted_cross_entropy(logits, labels, weights)
    assert loss.item() == pytest.approx((0.5 * ce[0] + 1.5 * ce[1]).item() / 2, rel=1e-6)
    loss.backward()
    assert logits.grad is not None


# -- the learner on the tiny CLIP -------------------------------------------------------
@pytest.fixture(scope="module")
def clip_model():
    return build_tiny_clip()


def models(clip_model, **overrides):
    node = isp_node(**overrides)
    torch.manual_seed(0)
    isp = PromptedCLIP(clip_model, isp_learner(clip_model, CLASSNAMES, node))
    torch.manual_seed(0)
    base = PromptedCLIP(clip_model, ivlp_learner(clip_model, CLASSNAMES, node))
    result = isp.prompt_learner.load_state_dict(base.prompt_learner.state_dict(), strict=False)
    assert not result.unexpected_keys
    return isp, base


@pytest.mark.parametrize("overrides", [
    {},
    {"CROSS_MODE": "linear"},
    {"SELF_STRUCT": False},
    {"CROSS_STRUCT": False, "N_CTX_VISION": 0, "PROMPT_DEPTH_VISION": 0},
], ids=["default", "linear", "cross_only", "text_only"])
def test_zero_gates_give_ivlps_logits(clip_model, overrides):
    isp, base = models(clip_model, **overrides)
    learner = isp.prompt_learner
    gates = learner.gate_parameters()
    assert gates and all(torch.count_nonzero(g) == 0 for g in gates)
    images = torch.randn(3, 3, 32, 32)
    out, ref = isp.forward_features(images), base.forward_features(images)
    assert out.logits.shape == (3, len(CLASSNAMES))
    assert torch.allclose(out.logits, ref.logits, atol=1e-6, rtol=0)
    assert torch.allclose(out.text_features, ref.text_features, atol=1e-6, rtol=0)
    # the modules are wired in: open gates change the logits
    with torch.no_grad():
        for gate in gates:
            gate.fill_(0.5)
    assert not torch.allclose(isp(images), ref.logits, atol=1e-3)


def maple_models(clip_model, **overrides):
    """ISP with CROSS_MODE maple and MaPLe's learner (same prompt count and
    depth), ISP carrying MaPLe's randomised weights."""
    node = isp_node(CROSS_MODE="maple", **overrides)
    torch.manual_seed(0)
    maple = PromptedCLIP(clip_model, PromptLearner(
        clip_model, CLASSNAMES, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT,
        init_policy="fixed", text_depth=node.PROMPT_DEPTH_TEXT, coupled=True))
    randomised(maple.prompt_learner, std=0.05, seed=1)
    isp = PromptedCLIP(clip_model, isp_learner(clip_model, CLASSNAMES, node))
    result = isp.prompt_learner.load_state_dict(maple.prompt_learner.state_dict(), strict=False)
    assert not result.unexpected_keys  # MaPLe's names: ctx, text_deep, proj, deep_proj
    assert all(k.startswith(("self_text.", "self_vision.")) for k in result.missing_keys)
    return isp, maple


@pytest.mark.parametrize("self_struct", [False, True], ids=["coupling_only", "with_self"])
def test_maple_mode_vision_prompts_are_maples_linear_maps(clip_model, self_struct):
    isp, maple = maple_models(clip_model, SELF_STRUCT=self_struct)
    learner = isp.prompt_learner
    assert learner.cross is None and not hasattr(learner, "vision_ctx")
    # the vision prompts of each layer are MaPLe's map of that layer's text prompts
    shallow, deep = learner.vision_prompts()
    ref_shallow, ref_deep = maple.prompt_learner.vision_prompts()
    assert torch.allclose(shallow, learner.ctx @ learner.proj.weight.t() + learner.proj.bias,
                          atol=1e-6)
    assert torch.equal(shallow, ref_shallow)
    if not self_struct:
        assert all(torch.equal(a, b) for a, b in zip(deep, ref_deep))
    images = torch.randn(3, 3, 32, 32)
    out, ref = isp.forward_features(images), maple.forward_features(images)
    assert torch.allclose(out.logits, ref.logits, atol=1e-6, rtol=0)
    assert torch.allclose(out.image_features, ref.image_features, atol=1e-6, rtol=0)
    # the image loss reaches the text context through the coupling (one-way)
    out.image_features.sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert learner.proj.weight.grad.abs().sum() > 0
    if self_struct:  # the self-structural blocks act on the coupled prompts
        with torch.no_grad():
            for gate in learner.gate_parameters():
                gate.fill_(0.5)
        assert not torch.allclose(isp(images), ref.logits, atol=1e-3)


def test_maple_mode_needs_the_text_prompts_count_and_depth(clip_model):
    check_isp_keys(isp_node(CROSS_MODE="maple"))
    with pytest.raises(ConfigError, match=r"N_CTX_VISION = N_CTX_TEXT \(2\).*got 4 and 2"):
        check_isp_keys(isp_node(CROSS_MODE="maple", N_CTX_VISION=4))
    with pytest.raises(ConfigError, match="PROMPT_DEPTH_VISION = PROMPT_DEPTH_TEXT"):
        isp_learner(clip_model, CLASSNAMES, isp_node(CROSS_MODE="maple", PROMPT_DEPTH_VISION=1))
    # without the cross-structural module the mode has nothing to couple
    check_isp_keys(isp_node(CROSS_MODE="maple", CROSS_STRUCT=False, N_CTX_VISION=4))


def test_learner_modules_and_prompt_shapes(clip_model):
    node = isp_node()
    learner = isp_learner(clip_model, CLASSNAMES, node)
    assert isinstance(learner, ISPPromptLearner)
    assert learner.self_text.num_layers == learner.self_vision.num_layers == 1
    assert learner.cross.num_layers == 2
    prompts = learner()
    assert prompts.text.shape == (3, 77, 64) and prompts.vision.shape == (2, 64)
    assert callable(prompts.text_deep) and callable(prompts.vision_deep)
    tokens = torch.randn(3, 77, 64)
    assert prompts.text_deep(1, tokens).shape == (3, 2, 64)  # one prompt per class
    assert prompts.text_deep(2, tokens) is None  # past the prompt depth
    vision_tokens = torch.randn(5, 1 + 16 + 2, 64)
    assert prompts.vision_deep(1, vision_tokens).shape == (5, 2, 64)  # one per image
    # frozen text tokens: SOS and everything after the context up to EOT
    eot = learner.tokenized_prompts.argmax(dim=-1)
    for row, e in zip(learner.frozen_text_ignore, eot):
        attended = (~row).nonzero().flatten().tolist()
        assert attended == [0] + list(range(1 + learner.n_ctx, int(e) + 1))
    off = isp_learner(clip_model, CLASSNAMES, isp_node(SELF_STRUCT=False, CROSS_STRUCT=False))
    assert off.self_text is None and off.cross is None and isinstance(off().text_deep, list)


def test_check_isp_keys_errors():
    check_isp_keys(isp_node())
    with pytest.raises(ConfigError, match="TRAINER.ISP.CROSS_STRUCT = True needs vision prompts"):
        check_isp_keys(isp_node(N_CTX_VISION=0))
    with pytest.raises(ConfigError, match="TRAINER.ISP.PROBE_SOURCE"):
        check_isp_keys(isp_node(PROBE_SOURCE="teacher"))
    with pytest.raises(ConfigError, match="TRAINER.ISP.PROBE_WEIGHTING"):
        check_isp_keys(isp_node(PROBE_WEIGHTING="focal"))
    with pytest.raises(ConfigError, match="TRAINER.ISP.CROSS_MODE"):
        check_isp_keys(isp_node(CROSS_MODE="graph"))
    with pytest.raises(ConfigError, match="PROBE_TEMPERATURE"):
        check_isp_keys(isp_node(PROBE_TEMPERATURE=0.0))
    with pytest.raises(ConfigError, match="SELF_WIDTH / SELF_HEADS"):
        check_isp_keys(isp_node(SELF_HEADS=3))
    with pytest.raises(ConfigError, match="KL_LOSS_WEIGHT"):
        check_isp_keys(isp_node(KL_LOSS_WEIGHT=-1.0))
    with pytest.raises(ConfigError, match="TRAINER.ISP.PROBE = 'yes' must be True or False"):
        check_isp_keys(isp_node(PROBE="yes"))


def test_settings_for_a_checkpoint_without_isps_modules():
    # an IVLP-shaped checkpoint (independent vision prompts) in the MaPLe-coupled mode
    assert settings_for_checkpoint(["deep_proj.0.weight", "proj.bias", "proj.weight"],
                                   ["vision_ctx", "vision_deep.0"]) == (
        "MaPLe coupling maps (deep_proj.*, proj.*)", ["CROSS_STRUCT False"])
    # an ISP run with the cross-structural module, loaded in the coupled mode
    assert settings_for_checkpoint(["proj.weight"], ["cross.to_text.gate", "vision_ctx"])[1] == [
        "CROSS_MODE cross_attention or linear"]
    assert settings_for_checkpoint(["cross.to_text.gate"], []) == (
        "cross-structural module (cross.*)", ["CROSS_STRUCT False"])
    # no ISP switch explains a missing context (another trainer's checkpoint)
    assert settings_for_checkpoint(["ctx", "self_text.attn.gate"], []) == (None, [])
