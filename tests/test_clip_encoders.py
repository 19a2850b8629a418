"""Prompted CLIP encoders: exact with prompts off; prompts, deep prompts,
token dropping and attention recording on the stock modules (tiny CLIP)."""
import pytest
import torch
from clip import clip as clip_api
from clip.model import convert_weights

from clipwb.errors import ConfigError
from tests.tiny_clip import build_tiny_clip
from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.prompted_encoders import (PromptedImageEncoder, PromptedTextEncoder,
                                        record_attention, run_stock_block)

TEXTS = ["a photo of a cat.", "a very small dog", "x"]


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    return load_clip(tiny_clip_path)  # frozen, as the trainers get it


@pytest.fixture
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_text_encoder_without_prompts_is_encode_text(clip_model):
    encoder = PromptedTextEncoder(clip_model)
    tokens = clip_api.tokenize(TEXTS)
    with torch.no_grad():
        expected = clip_model.encode_text(tokens)
        assert torch.allclose(encoder.encode_text(tokens), expected, atol=1e-6)
        # the same through embeddings + EOT indices
        out = encoder.encode(encoder.embed_tokens(tokens), tokens.argmax(-1))
        assert torch.allclose(out.features, expected, atol=1e-6)


def test_image_encoder_without_prompts_is_encode_image(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    with torch.no_grad():
        assert torch.allclose(encoder(images), clip_model.encode_image(images), atol=1e-6)


def test_fp16_weights_match_stock_encoders():
    """The full passes (77 positions, every token through the last block) are
    the stock encoders bit for bit; the shortened default passes agree to fp16
    rounding."""
    model = build_tiny_clip(seed=2)
    convert_weights(model)
    tokens = clip_api.tokenize(TEXTS)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        text_encoder, image_encoder = PromptedTextEncoder(model), PromptedImageEncoder(model)
        full = text_encoder.encode(text_encoder.embed_tokens(tokens), tokens, truncate=False,
                                   return_tokens=True).features
        full_img = image_encoder.encode(image, return_tokens=True).features
        assert full.dtype == full_img.dtype == torch.float16
        assert torch.equal(full, model.encode_text(tokens))
        assert torch.equal(full_img, model.encode_image(image))
        text = text_encoder.encode_text(tokens)  # up to the last EOT, EOT alone in the last block
        img = image_encoder(image)  # CLS alone in the last block
        assert text.dtype == img.dtype == torch.float16
        assert torch.allclose(text.float(), full.float(), atol=1e-2, rtol=1e-2)
        assert torch.allclose(img.float(), full_img.float(), atol=1e-2, rtol=1e-2)


def test_text_encoder_stops_after_the_last_eot(clip_model):
    """Causal attention: the padding after EOT never reaches a pooled feature,
    so the encoder runs only up to the last EOT, with deep prompts too."""
    encoder = PromptedTextEncoder(clip_model)
    tokens = clip_api.tokenize(TEXTS)
    last = int(tokens.argmax(-1).max())
    deep = [torch.randn(2, encoder.width) for _ in range(encoder.num_layers - 1)]
    seen = []

    def prompt_for(layer, x):
        seen.append(x.shape[1])
        return deep[layer - 1] if layer - 1 < len(deep) else None

    embedded = encoder.embed_tokens(tokens)
    with torch.no_grad():
        full = encoder.encode(embedded, tokens, deep, return_tokens=True, truncate=False)
        short = encoder.encode(embedded, tokens, prompt_for, return_tokens=True)
    assert full.tokens.shape[1] == 77 and short.tokens.shape[1] == last + 1 < 77
    assert seen == [last + 1] * (encoder.num_layers - 1)
    assert torch.allclose(short.features, full.features, atol=1e-5)
    assert torch.allclose(short.tokens, full.tokens[:, :last + 1], atol=1e-5)


def test_keeping_every_patch_is_a_no_op_and_dropping_changes(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    n = encoder.num_patches
    with torch.no_grad():
        full = encoder(images)
        keep_all = torch.arange(n).repeat(3, 1)
        assert torch.allclose(encoder(images, keep_index=keep_all), full, atol=1e-6)
        keep_half = torch.arange(0, n, 2).repeat(3, 1)
        out = encoder.encode(images, keep_index=keep_half, return_tokens=True)
        assert out.tokens.shape == (3, 1 + n // 2, encoder.width)
        assert not torch.allclose(out.features, full)


def test_token_dropping_gathers_after_positions(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    keep = torch.tensor([[3, 0], [5, 7], [1, 1]])
    with torch.no_grad():
        tokens = encoder.embed(images)
        kept = encoder.embed(images, keep_index=keep)
    assert torch.equal(kept[:, 0], tokens[:, 0])  # CLS kept
    for b in range(3):
        assert torch.equal(kept[b, 1:], tokens[b, 1 + keep[b]])


def test_key_padding_equals_gathering_the_kept_patches(clip_model, images):
    """``masked_patches`` (key padding) gives the gathered pass's CLS feature,
    prompt outputs and prompt gradients; an all-False mask is no mask, and
    masked and unmasked images share a batch."""
    encoder = PromptedImageEncoder(clip_model)
    n = encoder.num_patches
    gen = torch.Generator().manual_seed(1)
    keep = torch.stack([torch.randperm(n, generator=gen)[:11].sort().values for _ in range(3)])
    masked = torch.ones(3, n, dtype=torch.bool).scatter(1, keep, False)
    shallow = torch.randn(2, encoder.width, generator=gen).requires_grad_()
    deep = [torch.randn(2, encoder.width, generator=gen).requires_grad_()]

    def run(**removal):
        out = encoder.encode(images, shallow, deep, return_tokens=True, **removal)
        grads = torch.autograd.grad(out.features.pow(2).sum(), [shallow] + deep)
        return out, grads

    gathered, gathered_grads = run(keep_index=keep)
    padded, padded_grads = run(masked_patches=masked)
    assert padded.tokens.shape == (3, 1 + n + 2, encoder.width)  # nothing removed
    assert torch.allclose(padded.features, gathered.features, atol=1e-5)
    assert torch.allclose(padded.tokens[:, 0], gathered.tokens[:, 0], atol=1e-5)
    assert torch.allclose(padded.tokens[:, -2:], gathered.tokens[:, -2:], atol=1e-5)
    for a, b in zip(padded_grads, gathered_grads):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():
        plain = encoder(images, shallow, deep)
        none_masked = encoder(images, shallow, deep, masked_patches=torch.zeros(3, n).bool())
        assert torch.allclose(none_masked, plain, atol=1e-5)
        both = encoder(images.repeat(2, 1, 1, 1), shallow, deep,
                       masked_patches=torch.cat([torch.zeros_like(masked), masked]))
        assert torch.allclose(both[:3], plain, atol=1e-5)
        assert torch.allclose(both[3:], gathered.features, atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        encoder(images, keep_index=keep, masked_patches=masked)
    with pytest.raises(ValueError, match="masked_patches"):
        encoder(images, masked_patches=masked[:, :5])


def test_key_padding_beside_a_causal_mask(clip_model):
    """``run_stock_block`` with the text blocks' causal mask and a boolean key
    padding mask: a masked token is as if removed from the sequence."""
    block = clip_model.transformer.resblocks[0]
    x = torch.randn(6, 2, 64, generator=torch.Generator().manual_seed(2))
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[:, 1] = True
    with torch.no_grad():
        masked = run_stock_block(block, x, block.attn_mask[:6, :6], padding)
        removed = run_stock_block(block, x[[0, 2, 3, 4, 5]], block.attn_mask[:5, :5])
    assert torch.allclose(masked[[0, 2, 3, 4, 5]], removed, atol=1e-5)


def test_text_prompts_change_output_and_only_they_get_gradients(clip_model):
    encoder = PromptedTextEncoder(clip_model)
    tokens = clip_api.tokenize(["X X cat.", "X X dog."])
    base = encoder.embed_tokens(tokens).detach()
    ctx = torch.zeros(2, encoder.width, requires_grad=True)
    deep = [torch.randn(2, encoder.width, requires_grad=True)]
    prompts = torch.cat([base[:, :1], ctx.unsqueeze(0).expand(2, -1, -1), base[:, 3:]], dim=1)
    out = encoder(prompts, tokens, deep_prompts=deep)
    with torch.no_grad():
        plain = encoder(prompts, tokens)
    assert not torch.allclose(out, plain)
    out.sum().backward()
    assert ctx.grad.abs().sum() > 0 and deep[0].grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_model.parameters())


def test_deep_text_prompt_replaces_the_context_tokens(clip_model):
    encoder = PromptedTextEncoder(clip_model)
    tokens = clip_api.tokenize(["X X X cat."])
    prompts = encoder.embed_tokens(tokens)
    deep = torch.randn(3, encoder.width)
    with torch.no_grad():
        states = encoder.encode(prompts, tokens, deep_prompts=[deep], hidden_states=True)
    assert len(states.hidden_states) == encoder.num_layers + 1
    assert torch.equal(states.hidden_states[1][0, 1:4], deep)
    # positions 0 and 4.. keep the running tokens of block 0's output
    block0 = encoder.run_block(0, encoder.embed(prompts)).permute(1, 0, 2)
    length = states.hidden_states[1].shape[1]  # up to EOT
    assert length == int(tokens.argmax()) + 1
    assert torch.allclose(states.hidden_states[1][0, 4:], block0[0, 4:length], atol=1e-6)


def test_deep_prompts_from_a_callable_see_the_layer_tokens(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    shallow = torch.zeros(2, encoder.width)
    seen = []

    def from_tokens(layer, tokens):
        seen.append((layer, tokens.shape))
        return tokens[:, :2].mean(dim=1, keepdim=True).expand(-1, 2, -1)

    with torch.no_grad():
        out = encoder(images, shallow, from_tokens)
        fixed = encoder(images, shallow)
    assert seen == [(1, (3, 1 + encoder.num_patches + 2, encoder.width))]
    assert not torch.allclose(out, fixed)


def test_vision_prompts_get_gradients_and_change_features(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    shallow = torch.zeros(2, encoder.width, requires_grad=True)
    deep = [torch.randn(2, encoder.width, requires_grad=True)]
    out = encoder.encode(images, shallow, deep, return_tokens=True)
    assert out.tokens.shape == (3, 1 + encoder.num_patches + 2, encoder.width)
    with torch.no_grad():
        assert not torch.allclose(out.features, clip_model.encode_image(images))
    out.features.pow(2).sum().backward()
    assert shallow.grad.abs().sum() > 0 and deep[0].grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_model.parameters())
    # per-image prompts [B, n, W] are accepted too
    with torch.no_grad():
        per_image = encoder(images, shallow.detach().expand(3, -1, -1))
        assert torch.allclose(per_image, encoder(images, shallow.detach()), atol=1e-6)


def test_project_tokens_gives_the_pooled_feature(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    with torch.no_grad():
        out = encoder.encode(images, return_tokens=True)
        assert torch.allclose(encoder.project(out.tokens[:, 0]), out.features, atol=1e-6)


def test_record_attention_from_stock_modules(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    with torch.no_grad(), record_attention(encoder.blocks) as maps:
        out = encoder(images)
    n = 1 + encoder.num_patches
    assert sorted(maps) == [0, 1]
    assert maps[0].shape == (3, n, n)
    assert torch.allclose(maps[1].sum(-1), torch.ones(3, n), atol=1e-5)
    with torch.no_grad():  # hooks removed, the output is unchanged
        assert torch.allclose(encoder(images), out, atol=1e-6)
    text = PromptedTextEncoder(clip_model)
    with torch.no_grad(), record_attention(text.blocks, average_heads=False) as maps:
        text.encode_text(clip_api.tokenize(["a cat"]))
    causal = maps[0][0, 0]  # [L, L] of the single head
    assert torch.all(causal.triu(1) == 0)


def test_bad_prompt_shapes_and_resnet_are_reported(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    with pytest.raises(ValueError, match="vision prompt"):
        encoder(images, torch.zeros(2, encoder.width + 1))
    with pytest.raises(ValueError, match="deep vision prompts need"):
        encoder(images, None, [torch.zeros(2, encoder.width)])

    class FakeResNetCLIP:
        visual = torch.nn.Conv2d(3, 8, 3)

    with pytest.raises(ConfigError, match="ViT"):
        PromptedImageEncoder(FakeResNetCLIP()).encode(images, torch.zeros(1, 8))


def test_last_block_runs_for_the_pooled_token_only(clip_model, images):
    """Without token outputs the last block computes EOT / CLS alone; the
    features equal those of the full pass (tokens asked for), prompts and
    token dropping included, and a hook on that block gets the full pass."""
    text = PromptedTextEncoder(clip_model)
    tokens = clip_api.tokenize(TEXTS)
    deep = [torch.randn(2, text.width) for _ in range(text.num_layers - 1)]
    image = PromptedImageEncoder(clip_model)
    shallow = torch.randn(3, image.width)
    deep_v = [torch.randn(3, image.width) for _ in range(image.num_layers - 1)]
    keep = torch.tensor([[0, 2, 5, 7], [1, 3, 4, 6], [8, 9, 10, 15]])
    rows = {}

    def last_block_rows(module, args, kwargs, output):
        rows.setdefault(type(module).__name__, []).append(args[0].shape[0])

    with torch.no_grad():
        embedded = text.embed_tokens(tokens)
        pooled = text.encode(embedded, tokens, deep).features
        full = text.encode(embedded, tokens, deep, return_tokens=True).features
        assert torch.allclose(pooled, full, atol=1e-5)
        v_pooled = image.encode(images, shallow, deep_v, keep).features
        v_full = image.encode(images, shallow, deep_v, keep, return_tokens=True).features
        assert torch.allclose(v_pooled, v_full, atol=1e-5)
        queries = []
        handle = image.blocks[-1].attn.register_forward_hook(
            lambda m, args, out: queries.append(args[0].shape[0]))
        watched = image.encode(images, shallow, deep_v, keep).features
        handle.remove()
        assert queries == [1 + 4 + 3]  # every position: a hook sees the full block
        assert torch.allclose(watched, v_full, atol=1e-6)


def test_deep_vision_prompts_written_in_place_only_without_autograd(clip_model, images):
    encoder = PromptedImageEncoder(clip_model)
    shallow = torch.randn(2, encoder.width, requires_grad=True)
    deep = [torch.randn(2, encoder.width, requires_grad=True)
            for _ in range(encoder.num_layers - 1)]
    with_grad = encoder(images, shallow, deep)
    assert with_grad.requires_grad
    with_grad.sum().backward()  # the copying path keeps autograd intact
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep)
    with torch.no_grad():
        assert torch.allclose(encoder(images, shallow, deep), with_grad, atol=1e-6)
