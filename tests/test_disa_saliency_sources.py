"""DiSa's saliency sources (TRAINER.DISA.SALIENCY) against hand computations
on a tiny CLIP: the dense features of MaskCLIP (value path, residual and MLP
kept), SCLIP (q-q + k-k attention, residual and MLP kept), CLIP Surgery (the
v-v path over the last blocks) and the attention-branch-only variants, the
text and cls_attention sources, and the prompted pass the saliency benchmark
uses."""
import math

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

from clipwb.errors import ConfigError
from clipwb.trainers.disa.dense import DENSE_SOURCES, dense_tokens, surgery_path
from clipwb.trainers.disa.saliency import (SALIENCY_SOURCES, frozen_image_pass, image_pass,
                                           pass_needs, saliency_scores)
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder
from tests.tiny_clip import TINY_CLIP_KWARGS


def nontrivial_clip(layers=2):
    """Vision width 128 (two heads, so the per-head formulas are exercised),
    non-trivial biases and norms (CLIP inits them to 0 / 1)."""
    torch.manual_seed(0)
    model = CLIP(**dict(TINY_CLIP_KWARGS, vision_width=128, vision_layers=layers)).float().eval()
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            block.attn.in_proj_bias.normal_(0, 0.5)
            block.attn.out_proj.bias.normal_(0, 0.5)
            block.ln_1.weight.normal_(1, 0.2)
            block.ln_1.bias.normal_(0, 0.2)
            block.ln_2.weight.normal_(1, 0.2)
            block.ln_2.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def clip_model():
    return nontrivial_clip()


@pytest.fixture(scope="module")
def encoder(clip_model):
    return PromptedImageEncoder(clip_model)


def by_hand_block_inputs(visual, images):
    """Each block's input (batch first), through the stock modules' own
    forwards."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    x = x.permute(1, 0, 2)
    inputs = []
    for block in visual.transformer.resblocks:
        inputs.append(x.permute(1, 0, 2))
        x = block(x)
    return inputs


def by_hand_attention(block, x, mixing):
    """out_proj(concat_j A_j v_j) with explicit loops over images and heads."""
    width = x.shape[-1]
    n_heads = block.attn.num_heads
    d = width // n_heads
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    h = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    q = h @ w[:width].t() + b[:width]
    k = h @ w[width:2 * width].t() + b[width:2 * width]
    v = h @ w[2 * width:].t() + b[2 * width:]
    out = torch.zeros_like(v)
    for n in range(x.shape[0]):
        for j in range(n_heads):
            cols = slice(j * d, (j + 1) * d)
            qj, kj, vj = q[n, :, cols], k[n, :, cols], v[n, :, cols]
            if mixing == "identity":
                a = torch.eye(x.shape[1])
            elif mixing == "vv":
                a = torch.softmax(vj @ vj.t() / math.sqrt(d), dim=-1)
            else:
                a = (torch.softmax(qj @ qj.t() / math.sqrt(d), dim=-1)
                     + torch.softmax(kj @ kj.t() / math.sqrt(d), dim=-1))
            out[n, :, cols] = a @ vj
    return out @ block.attn.out_proj.weight.t() + block.attn.out_proj.bias


def by_hand_mlp(block, y):
    """CLIP's MLP: c_proj(QuickGELU(c_fc(ln_2(y))))."""
    width = y.shape[-1]
    h = F.layer_norm(y, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    h = h @ block.mlp.c_fc.weight.t() + block.mlp.c_fc.bias
    h = h * torch.sigmoid(1.702 * h)
    return h @ block.mlp.c_proj.weight.t() + block.mlp.c_proj.bias


def by_hand_dense(blocks, inputs, source):
    """The dense tokens of each source, written out from the papers."""
    last, x = blocks[-1], inputs[-1]
    if source in ("value", "csa"):  # MaskCLIP, SCLIP: residual and MLP kept
        y = x + by_hand_attention(last, x, "identity" if source == "value" else "csa")
        return y + by_hand_mlp(last, y)
    if source == "vv":  # CLIP Surgery: x_s + sum of the v-v branches, s = max(0, depth - 6)
        start = max(0, len(blocks) - 6)
        out = inputs[start].clone()
        for b in range(start, len(blocks)):
            out = out + by_hand_attention(blocks[b], inputs[b], "vv")
        return out
    mixing = {"value_attn": "identity", "csa_attn": "csa", "vv_attn": "vv"}[source]
    return by_hand_attention(last, x, mixing)


@pytest.mark.parametrize("source", DENSE_SOURCES)
def test_dense_tokens_by_hand(clip_model, source):
    torch.manual_seed(1)
    blocks = clip_model.visual.transformer.resblocks
    inputs = [torch.randn(2, 17, 128) for _ in blocks]
    with torch.no_grad():
        assert torch.allclose(dense_tokens(blocks, inputs, source),
                              by_hand_dense(blocks, inputs, source), atol=1e-4)


def test_clip_surgery_runs_through_the_last_six_blocks():
    model = nontrivial_clip(layers=8)
    blocks = model.visual.transformer.resblocks
    torch.manual_seed(3)
    inputs = [torch.randn(1, 17, 128) for _ in blocks]
    with torch.no_grad():
        expected = inputs[2] + sum(by_hand_attention(blocks[b], inputs[b], "vv")
                                   for b in range(2, 8))
        assert torch.allclose(dense_tokens(blocks, inputs, "vv"), expected, atol=1e-4)
        # the inputs of blocks 0 and 1 do not enter the path
        moved = [t + 5.0 if b < 2 else t for b, t in enumerate(inputs)]
        assert torch.equal(dense_tokens(blocks, moved, "vv"), dense_tokens(blocks, inputs, "vv"))
        one = surgery_path(blocks, inputs, n_blocks=1)
        assert torch.allclose(one, inputs[7] + by_hand_attention(blocks[7], inputs[7], "vv"),
                              atol=1e-4)


def test_the_sources_differ_and_value_is_token_wise(clip_model):
    blocks = clip_model.visual.transformer.resblocks
    torch.manual_seed(4)
    inputs = [torch.randn(1, 17, 128) for _ in blocks]
    with torch.no_grad():
        out = {s: dense_tokens(blocks, inputs, s) for s in DENSE_SOURCES}
        moved = [t.clone() for t in inputs]
        moved[-1][0, 5] += 1.0
        for source in ("value", "value_attn"):  # each token's output is its own
            changed = (dense_tokens(blocks, moved, source) - out[source]).abs().sum(-1)[0]
            assert changed[5] > 0 and torch.all(changed[torch.arange(17) != 5] == 0)
    for a in DENSE_SOURCES:
        for b in DENSE_SOURCES:
            assert a == b or not torch.allclose(out[a], out[b])
    with pytest.raises(ValueError, match="kv"):
        dense_tokens(blocks, inputs, "kv")
    with pytest.raises(ValueError, match="input of each of the 2 blocks"):
        dense_tokens(blocks, inputs[:1], "vv")


@pytest.mark.parametrize("source", DENSE_SOURCES)
def test_dense_saliency_by_hand(encoder, clip_model, source):
    torch.manual_seed(2)
    images = torch.randn(3, 3, 32, 32)
    text = torch.randn(5, 64)
    labels = torch.tensor([4, 0, 2])
    frozen = frozen_image_pass(encoder, images, None, *pass_needs(source))
    scores = saliency_scores(source, encoder, frozen, text, labels)
    with torch.no_grad():
        visual = clip_model.visual
        inputs = by_hand_block_inputs(visual, images)
        assert len(frozen.block_inputs) == len(inputs)
        for ours, theirs in zip(frozen.block_inputs, inputs):
            assert torch.allclose(ours, theirs, atol=1e-4)
        assert frozen.last_input is frozen.block_inputs[-1]
        dense = by_hand_dense(visual.transformer.resblocks, inputs, source)[:, 1:]
        z = F.normalize(visual.ln_post(dense) @ visual.proj, dim=-1)
        g = F.normalize(text[labels], dim=-1)
        expected = torch.softmax(100 * torch.einsum("bpd,bd->bp", z, g), dim=-1)
    assert scores.shape == (3, 16)
    assert torch.allclose(scores, expected, atol=1e-4)


def test_text_and_cls_attention_sources_by_hand(encoder, clip_model):
    images = torch.randn(2, 3, 32, 32)
    text = torch.randn(3, 64)
    labels = torch.tensor([1, 2])
    visual = clip_model.visual
    with torch.no_grad():
        x = by_hand_block_inputs(visual, images)[-1].permute(1, 0, 2)
        block = visual.transformer.resblocks[-1]
        h = block.ln_1(x)
        _, weights = block.attn(h, h, h, need_weights=True)  # head mean [B, L, L]
        out = block(x).permute(1, 0, 2)
        z = F.normalize(visual.ln_post(out[:, 1:]) @ visual.proj, dim=-1)
        g = F.normalize(text[labels], dim=-1)
        text_expected = torch.softmax(100 * torch.einsum("bpd,bd->bp", z, g), dim=-1)
        cls = weights[:, 0, 1:]
        cls_expected = cls / cls.sum(-1, keepdim=True)
    frozen = frozen_image_pass(encoder, images, None, *pass_needs("text"))
    assert frozen.block_inputs is None and frozen.cls_attention is None
    assert torch.allclose(saliency_scores("text", encoder, frozen, text, labels),
                          text_expected, atol=1e-4)
    frozen = frozen_image_pass(encoder, images, None, *pass_needs("cls_attention"))
    assert torch.allclose(saliency_scores("cls_attention", encoder, frozen, text, labels),
                          cls_expected, atol=1e-5)
    random = saliency_scores("random", encoder, frozen, text, labels,
                             generator=torch.Generator().manual_seed(0))
    assert random.shape == (2, 16) and torch.allclose(random.sum(-1), torch.ones(2))


def test_prompted_pass_leaves_the_prompt_tokens_out(encoder):
    images = torch.randn(2, 3, 32, 32)
    shallow, deep = torch.randn(3, 128), [torch.randn(3, 128)]
    with torch.no_grad():
        out = image_pass(encoder, images, with_attention=True, with_block_inputs=True,
                         shallow_prompts=shallow, deep_prompts=deep)
        tokens = encoder.encode(images, shallow, deep, return_tokens=True).tokens
    assert out.patch_features.shape == (2, 16, 64) and out.cls_attention.shape == (2, 16)
    assert out.last_input.shape == (2, 1 + 16 + 3, 128)
    # the block inputs are those after prompt insertion: block 1 sees the deep prompt
    assert torch.equal(out.block_inputs[1][:, 17:], deep[0].expand(2, 3, 128))
    assert torch.allclose(out.patch_features,
                          F.normalize(encoder.project(tokens[:, 1:17]), dim=-1), atol=1e-5)
    text = torch.randn(2, 64)
    scores = saliency_scores("vv", encoder, out, text, torch.tensor([0, 1]))
    assert scores.shape == (2, 16)


def test_every_source_is_listed_and_a_wrong_one_is_named():
    assert set(SALIENCY_SOURCES) == {"text", "cls_attention", "random", "value", "vv", "csa",
                                     "value_attn", "vv_attn", "csa_attn"}
    with pytest.raises(ConfigError, match="gradients"):
        saliency_scores("gradients", None, None, None, None)


@pytest.mark.parametrize("source", ["value", "vv", "csa"])
def test_the_trainer_masks_with_each_value_path_source(source, tiny_clip_path, tmp_path,
                                                        monkeypatch):
    from clipwb.engine import build_trainer
    from clipwb.trainers.disa.trainer import DiSa
    from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES
    from tests.trainer_kit import make_cfg, write_two_class_images

    monkeypatch.setattr(DiSa, "teacher_templates", PROMPTSRC_TEMPLATES[:3])
    torch.manual_seed(0)
    cfg = make_cfg("DiSa", tiny_clip_path, write_two_class_images(tmp_path),
                   tmp_path / "out", ("TRAINER.DISA.SALIENCY", source), test_batch_size=3)
    trainer = build_trainer(cfg)
    batch = next(iter(trainer.train_loader_x))
    images, labels = batch["img"], batch["label"]
    frozen = trainer.frozen_pass(images)
    assert len(frozen.block_inputs) == 2 and frozen.cls_attention is None
    saliency = trainer.patch_saliency(frozen, labels)
    expected = saliency_scores(source, trainer.model.image_encoder, frozen,
                               trainer.model.zero_shot.text_features, labels)
    assert torch.equal(saliency, expected)
    keep = trainer.keep_index(saliency)
    assert keep.shape == (images.shape[0], 11)  # round(0.7 * 16)
    # the kept patches are the 11 most salient of each image
    for row, kept in zip(saliency, keep):
        assert row[kept].min() == row.sort(descending=True).values[10]
    trainer.batch_idx, trainer.num_batches = 0, 1000
    summary = trainer.forward_backward(batch)
    assert summary["loss_cir"] > 0 and math.isfinite(summary["loss"])
