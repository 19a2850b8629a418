"""DiSa's saliency sources (TRAINER.DISA.SALIENCY) against hand computations
on a tiny CLIP: the dense value-path features (MaskCLIP's value, CLIP
Surgery's v-v attention, SCLIP's q-q + k-k attention), the text and
cls_attention sources, and the prompted pass the saliency benchmark uses."""
import math

import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

from clipwb.errors import ConfigError
from clipwb.trainers.disa.dense import dense_tokens
from clipwb.trainers.disa.saliency import (SALIENCY_SOURCES, frozen_image_pass, image_pass,
                                           pass_needs, saliency_scores)
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder
from tests.tiny_clip import TINY_CLIP_KWARGS


@pytest.fixture(scope="module")
def clip_model():
    # vision width 128: two heads, so the per-head formulas are exercised
    torch.manual_seed(0)
    model = CLIP(**dict(TINY_CLIP_KWARGS, vision_width=128)).float().eval()
    with torch.no_grad():  # non-trivial biases and norms (CLIP inits them to 0 / 1)
        for block in model.visual.transformer.resblocks:
            block.attn.in_proj_bias.normal_(0, 0.5)
            block.attn.out_proj.bias.normal_(0, 0.5)
            block.ln_1.weight.normal_(1, 0.2)
            block.ln_1.bias.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def encoder(clip_model):
    return PromptedImageEncoder(clip_model)


def by_hand_last_input(visual, images):
    """The last block's input, through the stock modules' own forwards."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    x = x.permute(1, 0, 2)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x.permute(1, 0, 2)


def by_hand_dense(block, x, path):
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
            if path == "value":
                mixing = torch.eye(x.shape[1])
            elif path == "vv":
                mixing = torch.softmax(vj @ vj.t() / math.sqrt(d), dim=-1)
            else:
                mixing = (torch.softmax(qj @ qj.t() / math.sqrt(d), dim=-1)
                          + torch.softmax(kj @ kj.t() / math.sqrt(d), dim=-1))
            out[n, :, cols] = mixing @ vj
    return out @ block.attn.out_proj.weight.t() + block.attn.out_proj.bias


@pytest.mark.parametrize("path", ["value", "vv", "csa"])
def test_dense_tokens_by_hand(clip_model, path):
    torch.manual_seed(1)
    x = torch.randn(2, 17, 128)
    block = clip_model.visual.transformer.resblocks[-1]
    with torch.no_grad():
        assert torch.allclose(dense_tokens(block, x, path), by_hand_dense(block, x, path),
                              atol=1e-4)


def test_the_paths_differ_and_value_is_token_wise(clip_model):
    block = clip_model.visual.transformer.resblocks[-1]
    x = torch.randn(1, 17, 128)
    with torch.no_grad():
        out = {p: dense_tokens(block, x, p) for p in ("value", "vv", "csa")}
        # value: each token's output depends on that token only
        moved = x.clone()
        moved[0, 5] += 1.0
        changed = (dense_tokens(block, moved, "value") - out["value"]).abs().sum(-1)[0]
    assert changed[5] > 0 and torch.all(changed[torch.arange(17) != 5] == 0)
    assert not torch.allclose(out["value"], out["vv"])
    assert not torch.allclose(out["vv"], out["csa"])
    with pytest.raises(ValueError, match="kv"):
        dense_tokens(block, x, "kv")


@pytest.mark.parametrize("source", ["value", "vv", "csa"])
def test_value_path_saliency_by_hand(encoder, clip_model, source):
    torch.manual_seed(2)
    images = torch.randn(3, 3, 32, 32)
    text = torch.randn(5, 64)
    labels = torch.tensor([4, 0, 2])
    frozen = frozen_image_pass(encoder, images, None, *pass_needs(source))
    scores = saliency_scores(source, encoder, frozen, text, labels)
    with torch.no_grad():
        visual = clip_model.visual
        x = by_hand_last_input(visual, images)
        assert torch.allclose(frozen.last_input, x, atol=1e-4)
        dense = by_hand_dense(visual.transformer.resblocks[-1], x, source)[:, 1:]
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
        x = by_hand_last_input(visual, images).permute(1, 0, 2)
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
    assert frozen.last_input is None and frozen.cls_attention is None
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
        out = image_pass(encoder, images, with_attention=True, with_last_input=True,
                         shallow_prompts=shallow, deep_prompts=deep)
        tokens = encoder.encode(images, shallow, deep, return_tokens=True).tokens
    assert out.patch_features.shape == (2, 16, 64) and out.cls_attention.shape == (2, 16)
    assert out.last_input.shape == (2, 1 + 16 + 3, 128)
    assert torch.allclose(out.patch_features,
                          F.normalize(encoder.project(tokens[:, 1:17]), dim=-1), atol=1e-5)
    text = torch.randn(2, 64)
    scores = saliency_scores("vv", encoder, out, text, torch.tensor([0, 1]))
    assert scores.shape == (2, 16)


def test_every_source_is_listed_and_a_wrong_one_is_named():
    assert set(SALIENCY_SOURCES) == {"text", "cls_attention", "random", "value", "vv", "csa"}
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
    assert frozen.last_input is not None and frozen.cls_attention is None
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
