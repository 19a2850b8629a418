"""Block hooks of the prompted encoders (``BlockHooks``): a residual term
added to a block's output (MMA's adapters) and tokens inserted into the
sequence (MMRL's representation tokens), each against a hand-written
forked encoder that runs the stock block arithmetic itself; with and
without the encoders' shortcuts."""
import pytest
import torch
from clip import clip as clip_api

from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.prompted_encoders import (BlockHooks, PromptedImageEncoder,
                                                   PromptedTextEncoder)

TEXTS = ["a photo of a cat.", "a very small dog", "x"]


@pytest.fixture(scope="module")
def clip_model(tiny_clip_path):
    return load_clip(tiny_clip_path)


def _block(block, x, mask=None):
    """The stock residual block written out (OpenAI's forward)."""
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def _mask(length):
    mask = torch.empty(length, length)
    mask.fill_(float("-inf"))
    return mask.triu_(1)


def _adapter(width, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(width, width, generator=gen) * 0.1


def _residual_from(weights):
    """A residual hook: ``ln_1(x) @ W_layer`` for the layers in ``weights``."""
    def residual(layer, block, x):
        if layer not in weights:
            return None
        return block.ln_1(x) @ weights[layer]
    return residual


def _forked_text(model, tokens, weights=None, inserted=None, insert_at=None):
    """CLIP's text encoder forked by hand: after block ``i`` a term
    ``ln_1(x_in) @ W_i``; from layer ``insert_at`` on, ``inserted`` tokens
    right after SOS (inserted at that layer, replaced at the later ones)."""
    weights = weights or {}
    x = model.token_embedding(tokens) + model.positional_embedding
    x = x.permute(1, 0, 2)
    eot = tokens.argmax(-1)
    for layer, block in enumerate(model.transformer.resblocks):
        if inserted is not None and layer >= insert_at:
            new = inserted[layer].unsqueeze(1).expand(-1, x.shape[1], -1)
            rest = x[1:] if layer == insert_at else x[1 + new.shape[0]:]
            x = torch.cat([x[:1], new, rest])
        y = _block(block, x, _mask(x.shape[0]))
        if layer in weights:
            y = y + block.ln_1(x) @ weights[layer]
        x = y
    if inserted is not None:
        eot = eot + inserted[insert_at].shape[0]
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def _forked_image(model, image, weights=None, inserted=None, insert_at=None):
    v = model.visual
    x = v.conv1(image).flatten(2).permute(0, 2, 1)
    cls = v.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = v.ln_pre(torch.cat([cls, x], 1) + v.positional_embedding).permute(1, 0, 2)
    for layer, block in enumerate(v.transformer.resblocks):
        if inserted is not None and layer >= insert_at:
            new = inserted[layer].unsqueeze(1).expand(-1, x.shape[1], -1)
            rest = x[1:] if layer == insert_at else x[1 + new.shape[0]:]
            x = torch.cat([x[:1], new, rest])
        y = _block(block, x)
        if weights and layer in weights:
            y = y + block.ln_1(x) @ weights[layer]
        x = y
    return v.ln_post(x[0]) @ v.proj


def _insertion(inserted, insert_at, n):
    """A ``before`` hook: insert after position 0 at ``insert_at``, replace later."""
    def before(layer, x):
        if layer < insert_at:
            return x
        new = inserted[layer].to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
        rest = x[1:] if layer == insert_at else x[1 + n:]
        return torch.cat([x[:1], new, rest])
    return before


@pytest.mark.parametrize("full", [False, True])
def test_text_residual_hook_is_the_forked_block(clip_model, full):
    encoder = PromptedTextEncoder(clip_model)
    encoder.full_sequences = full
    width = encoder.width
    layers = encoder.num_layers
    weights = {i: _adapter(width, i) for i in range(1, layers)}  # the last block included
    tokens = clip_api.tokenize(TEXTS)
    with torch.no_grad():
        ours = encoder(encoder.embed_tokens(tokens), tokens,
                       hooks=BlockHooks(residual=_residual_from(weights)))
        expected = _forked_text(clip_model, tokens, weights)
        plain = encoder(encoder.embed_tokens(tokens), tokens)
    assert torch.allclose(ours, expected, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)  # the hook did act


@pytest.mark.parametrize("full", [False, True])
def test_image_residual_hook_is_the_forked_block(clip_model, full):
    encoder = PromptedImageEncoder(clip_model)
    encoder.full_sequences = full
    weights = {i: _adapter(encoder.width, 10 + i) for i in range(encoder.num_layers)}
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = encoder(image, hooks=BlockHooks(residual=_residual_from(weights)))
        expected = _forked_image(clip_model, image, weights)
        plain = encoder(image)
    assert torch.allclose(ours, expected, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)


@pytest.mark.parametrize("full", [False, True])
def test_text_tokens_inserted_after_sos_move_the_eot(clip_model, full):
    """Inserted at layer 1 (the sequence grows, the causal mask with it, even
    past the 77 positions of the stock mask), replaced at layer 2."""
    encoder = PromptedTextEncoder(clip_model)
    encoder.full_sequences = full
    n = 2
    gen = torch.Generator().manual_seed(3)
    inserted = {i: torch.randn(n, encoder.width, generator=gen) for i in range(encoder.num_layers)}
    tokens = clip_api.tokenize(TEXTS)
    with torch.no_grad():
        out = encoder.encode(encoder.embed_tokens(tokens), tokens,
                             hooks=BlockHooks(before=_insertion(inserted, 1, n)),
                             return_tokens=full)
        expected = _forked_text(clip_model, tokens, inserted=inserted, insert_at=1)
    assert torch.allclose(out.features, expected, atol=1e-5)
    if full:
        assert out.tokens.shape[1] == 77 + n


@pytest.mark.parametrize("full", [False, True])
def test_image_tokens_inserted_after_cls(clip_model, full):
    encoder = PromptedImageEncoder(clip_model)
    encoder.full_sequences = full
    n = 3
    gen = torch.Generator().manual_seed(4)
    inserted = {i: torch.randn(n, encoder.width, generator=gen) for i in range(encoder.num_layers)}
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = encoder(image, hooks=BlockHooks(before=_insertion(inserted, 0, n)))
        expected = _forked_image(clip_model, image, inserted=inserted, insert_at=0)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_hooks_need_a_vit():
    """A ResNet image tower cannot take block hooks: the encoder says so."""
    from clipwb.errors import ConfigError

    class FakeResNetCLIP:
        visual = torch.nn.Conv2d(3, 8, 1)  # no transformer, no class embedding

    with pytest.raises(ConfigError, match="ViT"):
        PromptedImageEncoder(FakeResNetCLIP()).encode(torch.zeros(1, 3, 4, 4),
                                                     hooks=BlockHooks())
