"""CLIP text / image encoders with prompt tokens, built on the stock CLIP modules.

Both encoders keep references to the modules of a ``clip.model.CLIP`` and run
its ``ResidualAttentionBlock``s one by one, so prompt tokens can be inserted or
replaced between blocks without copying CLIP's block code. With no prompts they
compute exactly ``clip_model.encode_text`` / ``clip_model.encode_image``.

Prompt conventions (IVLP / MaPLe / PromptSRC):

- text: the ``n`` context tokens sit right after SOS (positions ``1..n``); a
  deep prompt for layer ``i >= 1`` replaces them before block ``i``.
- image (ViT only): shallow prompts are appended after ``[CLS, patches]``
  (after the positional embedding, before ``ln_pre``); a deep prompt for layer
  ``i >= 1`` replaces the last ``n`` tokens before block ``i``.

``deep_prompts`` is either a sequence (entry ``i - 1`` is layer ``i``'s prompt,
``None`` keeps the running tokens) or a callable ``fn(layer, tokens) -> prompt
or None`` receiving the block input in batch-first layout (for prompts computed
from that layer's tokens). A prompt is ``[n, width]`` (shared) or
``[batch, n, width]``. The building steps (``embed``, ``run_block``, ``pool``)
are public so that a method can drive both encoders layer by layer.

Image patches can be removed in two ways: gathered out of the sequence
(``keep_index``), or kept in it and masked out of every block's attention as
keys (``masked_patches``, a key padding mask on the stock attention; CLS and
prompts never masked). Both give the same CLS feature; the second lets masked
and unmasked images share one batch.

The text encoder stops each sequence batch after its last EOT token: CLIP's
text attention is causal, so the padding after EOT never reaches a pooled
feature, and a prompt of ~10 tokens costs ~10 positions instead of 77. The
token outputs (``return_tokens``, ``hidden_states``, callable deep prompts)
then have that shorter length; ``encode(..., truncate=False)`` keeps all 77.

Both encoders run their last block for the pooled token only (EOT / CLS:
its attention over all tokens, then its MLP) unless the tokens are asked for
or a hook watches that block's attention: the other positions' last outputs
are never used, and skipping them saves ~7 % of an encoder pass.

Block hooks (:class:`BlockHooks`) let a method act inside the stock blocks
without forking them: ``before(layer, x)`` may change the block input
(insert or replace tokens: MMRL's representation tokens), and
``residual(layer, block, x)`` returns a term added to the block's output,
computed from the block's input (MMA's adapters:
``x' = x + attn(ln_1 x); x'' = x' + mlp(ln_2 x') + residual``). Tokens
inserted into a text sequence go before its EOT token: the pooled position
moves by the number of tokens added.

Both shortcuts give the same features up to float rounding (the matrix
products see other shapes). An encoder with ``full_sequences`` set computes
every position of every block as the stock ``encode_text`` / ``encode_image``
do, for results equal bit for bit to them (and to the official code); the
trainers set it on every encoder when the environment has
``CLIPWB_FULL_SEQUENCES=1`` (the official-parity runs), at the cost of the
shortcuts' savings.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import nn

from clipwb.errors import ConfigError

#: environment switch: every encoder computes full sequences (module docstring)
FULL_SEQUENCES_ENV = "CLIPWB_FULL_SEQUENCES"


@dataclass
class EncoderOutput:
    """``features``: projected pooled features [N, D] (not normalised);
    ``tokens``: last block's output [N, L, W] (batch first) when asked;
    ``hidden_states``: each block's input [N, L, W] (after prompt insertion),
    then the last block's output, when asked."""

    features: torch.Tensor
    tokens: Optional[torch.Tensor] = None
    hidden_states: Optional[List[torch.Tensor]] = None


@dataclass
class BlockHooks:
    """A method's additions to the stock blocks (module docstring).

    ``before(layer, x) -> x``: the input of block ``layer`` ([L, N, W],
    after any deep prompt), possibly with tokens inserted or replaced;
    ``residual(layer, block, x) -> tensor or None``: a term [L', N, W] added
    to the output of block ``layer`` (the stock ``block``), computed from its
    input ``x`` (the pooled row only, [1, N, W], when the encoder runs the
    last block for the pooled token only). Either may be ``None``."""

    before: Optional[Callable] = None
    residual: Optional[Callable] = None


def _before_block(hooks, layer, x):
    return x if hooks is None or hooks.before is None else hooks.before(layer, x)


def _add_residual(hooks, layer, block, x_in, x_out):
    if hooks is None or hooks.residual is None:
        return x_out
    term = hooks.residual(layer, block, x_in)
    return x_out if term is None else x_out + term


def causal_mask(length, dtype, device):
    """CLIP's causal text mask (``-inf`` above the diagonal) for ``length`` tokens."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1).to(dtype)


def _layer_prompt(deep_prompts, layer, x_lnd):
    """The prompt to insert before block ``layer`` (None: keep the tokens)."""
    if deep_prompts is None or layer == 0:
        return None
    if callable(deep_prompts):
        return deep_prompts(layer, x_lnd.permute(1, 0, 2))
    if layer - 1 < len(deep_prompts):
        return deep_prompts[layer - 1]
    return None


def _batched(prompt, batch, width, dtype, what, round_half=False):
    """``prompt`` as [batch, n, width] in ``dtype`` (no copy when shared);
    ``round_half``: through float16 after the expansion, as the official
    forks' ``prompt.expand(...).half()`` (so the backward sums the per-sample
    gradients, each rounded to float16, in the prompt's float32)."""
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(batch, -1, -1)
    if prompt.dim() != 3 or prompt.shape[0] != batch or prompt.shape[-1] != width:
        raise ValueError("{} must be [n, {}] or [{}, n, {}], got {}".format(
            what, width, batch, width, tuple(prompt.shape)))
    if round_half:
        prompt = prompt.half()
    return prompt.to(dtype)


def pooled_block(block, x, rows, key_padding_mask=None):
    """A stock ``ResidualAttentionBlock`` on ``x`` [L, N, W] computed for one
    position per sequence only: ``rows`` [N] (its queries attend to every key
    not masked by ``key_padding_mask`` [N, L]); returns [N, W]."""
    h = block.ln_1(x)
    batch = torch.arange(x.shape[1], device=x.device)
    query = h[rows, batch].unsqueeze(0)
    y = x[rows, batch] + block.attn(query, h, h, need_weights=False,
                                    key_padding_mask=key_padding_mask)[0][0]
    return y + block.mlp(block.ln_2(y))


def run_stock_block(block, x, attn_mask=None, key_padding_mask=None):
    """CLIP's ``ResidualAttentionBlock`` on ``x`` [L, N, W], computed from its
    submodules (``ln_1``, ``attn``, ``ln_2``, ``mlp``) as OpenAI's forward
    does, never through ``block.forward``: a CoOp-family fork's blocks take
    prompt arguments in their forward, and the prompts here are the
    encoder's. ``key_padding_mask`` [N, L] (bool, True: that token is no
    key of any query) goes to the stock attention as is; beside a float
    ``attn_mask`` it is made additive in the same dtype."""
    if attn_mask is not None:
        attn_mask = attn_mask.to(dtype=x.dtype, device=x.device)
        if key_padding_mask is not None and key_padding_mask.dtype == torch.bool:
            key_padding_mask = torch.zeros(key_padding_mask.shape, dtype=x.dtype,
                                           device=x.device).masked_fill(key_padding_mask,
                                                                        float("-inf"))
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=attn_mask,
                       key_padding_mask=key_padding_mask)[0]
    return x + block.mlp(block.ln_2(x))


def _watched(block):
    """True when hooks watch the block's attention (record_attention)."""
    return bool(block.attn._forward_hooks or block.attn._forward_pre_hooks)


class PromptedTextEncoder(nn.Module):
    """CLIP's text transformer taking token embeddings (with learnable context).

    ``round_prompts``: deep prompts go in rounded to float16 whatever the
    encoder's dtype, as the official MaPLe / IVLP / PromptSRC fork's blocks
    round them (``PREC fp32``); the context after SOS is not rounded."""

    round_prompts = False
    #: every position of every block, as the stock encoder (module docstring)
    full_sequences = False

    def __init__(self, clip_model):
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.blocks = clip_model.transformer.resblocks
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def dtype(self):
        return self.text_projection.dtype

    @property
    def width(self):
        return self.ln_final.weight.shape[0]

    @property
    def num_layers(self):
        return len(self.blocks)

    def embed_tokens(self, tokenized):
        """Token embeddings [N, 77, width] of tokenized text, in CLIP's dtype."""
        return self.token_embedding(tokenized).to(self.dtype)

    def embed(self, prompts):
        """Prompt embeddings [N, L, W] -> block input [L, N, W] (positions added;
        ``L`` may be shorter than the context length: the first ``L`` positions)."""
        positions = self.positional_embedding[:prompts.shape[1]]
        x = prompts.to(self.dtype) + positions.to(self.dtype)
        return x.permute(1, 0, 2)

    def insert_prompt(self, x, prompt, start=1):
        """Replace the ``n`` tokens from ``start`` of ``x`` [L, N, W] by ``prompt``."""
        prompt = _batched(prompt, x.shape[1], x.shape[-1], x.dtype, "deep text prompt",
                          self.round_prompts)
        n = prompt.shape[1]
        return torch.cat([x[:start], prompt.permute(1, 0, 2), x[start + n:]], dim=0)

    def run_block(self, layer, x, hooks=None):
        """Block ``layer`` on ``x`` [L, N, W]; for ``L`` below the context
        length, with the top-left ``L x L`` part of the block's causal mask
        (above it, e.g. with inserted tokens, a causal mask of that length);
        ``hooks``: :class:`BlockHooks` (their ``residual``)."""
        block = self.blocks[layer]
        mask = block.attn_mask
        if mask is not None and mask.shape[-1] != x.shape[0]:
            if x.shape[0] <= mask.shape[-1]:
                mask = mask[:x.shape[0], :x.shape[0]]
            else:
                mask = causal_mask(x.shape[0], mask.dtype, mask.device)
        return _add_residual(hooks, layer, block, x, run_stock_block(block, x, mask))

    def pool(self, x, eot_index):
        """Block output [L, N, W] -> projected EOT features [N, D]."""
        return self.project(x[eot_index, torch.arange(x.shape[1], device=x.device)])

    def project(self, eot_tokens):
        """``ln_final`` then ``text_projection`` of EOT outputs [N, W]."""
        return self.ln_final(eot_tokens).to(self.dtype) @ self.text_projection

    def run_last_block_pooled(self, x, eot_index, hooks=None):
        """The last block for the EOT rows only: projected features [N, D]."""
        positions = torch.arange(x.shape[0], device=x.device)
        eot_index = eot_index.to(x.device)
        after_eot = positions.unsqueeze(0) > eot_index.unsqueeze(1)
        block = self.blocks[-1]
        rows = x[eot_index, torch.arange(x.shape[1], device=x.device)].unsqueeze(0)
        pooled = _add_residual(hooks, self.num_layers - 1, block, rows,
                               pooled_block(block, x, eot_index, after_eot).unsqueeze(0))
        return self.project(pooled[0])

    @staticmethod
    def eot_index(tokenized_prompts):
        """EOT positions: the argmax of each tokenized row (a 1-D tensor is taken as is)."""
        if tokenized_prompts.dim() == 1:
            return tokenized_prompts
        return tokenized_prompts.argmax(dim=-1)

    def encode(self, prompts, tokenized_prompts, deep_prompts=None, ctx_start=1,
               return_tokens=False, hidden_states=False, truncate=True, hooks=None):
        """Encode prompt embeddings [N, L, W]; ``tokenized_prompts`` [N, L] (or
        EOT indices [N]) selects the pooled token. With ``truncate`` the
        positions after the last EOT are not computed (same features).
        ``hooks``: :class:`BlockHooks`. Returns :class:`EncoderOutput`."""
        eot = self.eot_index(tokenized_prompts)
        if truncate and eot.numel() and not self.full_sequences:
            prompts = prompts[:, :int(eot.max()) + 1]
        x = self.embed(prompts)
        states = [] if hidden_states else None
        pooled_only = not (return_tokens or hidden_states or self.full_sequences
                           or _watched(self.blocks[-1]))
        for layer in range(self.num_layers):
            prompt = _layer_prompt(deep_prompts, layer, x)
            if prompt is not None:
                x = self.insert_prompt(x, prompt, ctx_start)
            length = x.shape[0]
            x = _before_block(hooks, layer, x)
            eot = eot + (x.shape[0] - length)
            if states is not None:
                states.append(x.permute(1, 0, 2))
            if pooled_only and layer == self.num_layers - 1:
                return EncoderOutput(self.run_last_block_pooled(x, eot, hooks))
            x = self.run_block(layer, x, hooks)
        tokens = x.permute(1, 0, 2)
        if states is not None:
            states.append(tokens)
        features = self.pool(x, eot)
        return EncoderOutput(features, tokens if return_tokens else None, states)

    def forward(self, prompts, tokenized_prompts, deep_prompts=None, ctx_start=1, hooks=None):
        return self.encode(prompts, tokenized_prompts, deep_prompts, ctx_start,
                           hooks=hooks).features

    def encode_text(self, tokenized):
        """Frozen-CLIP text features of tokenized text (== ``clip_model.encode_text``)."""
        return self.forward(self.embed_tokens(tokenized), tokenized)


class PromptedImageEncoder(nn.Module):
    """CLIP's image encoder with optional vision prompts and patch-token dropping.

    ``round_prompts``: shallow and deep vision prompts go in rounded to
    float16 whatever the encoder's dtype (the official forks' ``.half()``)."""

    round_prompts = False
    #: every position of the last block, as the stock encoder (module docstring)
    full_sequences = False

    def __init__(self, clip_model):
        super().__init__()
        self.visual = clip_model.visual

    @property
    def is_vit(self):
        return hasattr(self.visual, "transformer") and hasattr(self.visual, "class_embedding")

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    @property
    def width(self):
        return self.visual.conv1.out_channels

    @property
    def output_dim(self):
        return self.visual.output_dim

    @property
    def blocks(self):
        return self.visual.transformer.resblocks

    @property
    def num_layers(self):
        return len(self.blocks) if self.is_vit else 0

    @property
    def num_patches(self):
        return self.visual.positional_embedding.shape[0] - 1

    def embed(self, image, keep_index=None):
        """Images -> [CLS, patches] tokens [B, 1 + P, W] with positions added.

        ``keep_index`` [B, K] (patch indices in ``0..P-1``) keeps only those
        patch tokens (after the positional embedding; CLS is always kept).
        """
        v = self.visual
        x = v.conv1(image.to(self.dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(
            x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        if keep_index is not None:
            if keep_index.dim() != 2 or keep_index.shape[0] != x.shape[0]:
                raise ValueError("keep_index must be [batch, K], got {}".format(
                    tuple(keep_index.shape)))
            index = keep_index.to(x.device).long().unsqueeze(-1).expand(-1, -1, x.shape[-1])
            x = torch.cat([x[:, :1], torch.gather(x[:, 1:], 1, index)], dim=1)
        return x

    def append_prompts(self, x, prompts):
        """Append shallow prompts after the tokens of ``x`` [B, L, W]."""
        prompts = _batched(prompts, x.shape[0], x.shape[-1], x.dtype, "vision prompt",
                           self.round_prompts)
        return torch.cat([x, prompts], dim=1)

    def replace_prompts(self, x, prompt):
        """Replace the last ``n`` tokens of ``x`` [L, B, W] by ``prompt``.

        Without autograd (inference, frozen passes) ``x``, a block's fresh
        output, is written in place instead of copied whole at every layer."""
        prompt = _batched(prompt, x.shape[1], x.shape[-1], x.dtype, "deep vision prompt",
                          self.round_prompts)
        start = x.shape[0] - prompt.shape[1]
        if not (torch.is_grad_enabled() and (x.requires_grad or prompt.requires_grad)):
            x[start:] = prompt.permute(1, 0, 2)
            return x
        return torch.cat([x[:start], prompt.permute(1, 0, 2)], dim=0)

    def run_block(self, layer, x, key_padding_mask=None, hooks=None):
        """Block ``layer`` on ``x`` [L, B, W]; ``key_padding_mask`` [B, L]
        (:meth:`padding_mask`) hides tokens from the attention as keys;
        ``hooks``: :class:`BlockHooks` (their ``residual``)."""
        block = self.blocks[layer]
        out = run_stock_block(block, x, getattr(block, "attn_mask", None), key_padding_mask)
        return _add_residual(hooks, layer, block, x, out)

    def padding_mask(self, masked_patches, n_tokens):
        """Key padding mask [B, n_tokens] of a ``[CLS, patches, prompts]``
        sequence from ``masked_patches`` [B, P] (True: the attention of every
        block ignores that patch token as a key). CLS and the prompts after
        the patches are never masked."""
        batch, n_patches = masked_patches.shape
        if n_patches != self.num_patches or n_tokens < 1 + n_patches:
            raise ValueError("masked_patches must be [batch, {}], got {}".format(
                self.num_patches, tuple(masked_patches.shape)))
        mask = torch.zeros(batch, n_tokens, dtype=torch.bool, device=masked_patches.device)
        mask[:, 1:1 + n_patches] = masked_patches.bool()
        return mask

    def pool(self, x):
        """Block output [L, B, W] -> projected CLS feature [B, D]."""
        return self.project(x[0])

    def project(self, tokens):
        """``ln_post`` then ``proj`` of any tokens [..., W] (dense features)."""
        x = self.visual.ln_post(tokens)
        if self.visual.proj is not None:
            x = x @ self.visual.proj
        return x

    def encode(self, image, shallow_prompts=None, deep_prompts=None, keep_index=None,
               return_tokens=False, hidden_states=False, masked_patches=None, hooks=None):
        """Encode images [B, 3, H, W]; returns :class:`EncoderOutput`.

        Two ways to remove patches: ``keep_index`` [B, K] gathers the kept
        patch tokens out (a shorter sequence); ``masked_patches`` [B, P]
        (bool, True: masked) keeps every token in the sequence and masks
        the masked ones out of each block's attention as keys (a key padding
        mask), so the CLS and prompt outputs are those of the gathered
        sequence, and images with different masks (or none) share a batch.
        The masked tokens' own outputs (``return_tokens``) are computed but
        seen by no other token. ``hooks``: :class:`BlockHooks` (a ``before``
        that changes the sequence length is not combined with
        ``masked_patches``)."""
        extras = (shallow_prompts, deep_prompts, keep_index, masked_patches, hooks)
        if not self.is_vit:
            if any(e is not None for e in extras) or return_tokens or hidden_states:
                raise ConfigError(
                    "Vision prompts, token dropping and token outputs need a ViT CLIP; "
                    "MODEL.BACKBONE.NAME is a ResNet CLIP. Use a ViT backbone (e.g. "
                    "ViT-B/16) or a text-only trainer (CoOp, CoCoOp).")
            return EncoderOutput(self.visual(image.to(self.dtype)))
        if deep_prompts is not None and shallow_prompts is None:
            raise ValueError("deep vision prompts need shallow vision prompts")
        if keep_index is not None and masked_patches is not None:
            raise ValueError("give keep_index (gather) or masked_patches (key padding), "
                             "not both")
        x = self.embed(image, keep_index)
        if shallow_prompts is not None:
            x = self.append_prompts(x, shallow_prompts)
        padding = None
        if masked_patches is not None:
            padding = self.padding_mask(masked_patches.to(x.device), x.shape[1])
        x = self.visual.ln_pre(x).permute(1, 0, 2)
        states = [] if hidden_states else None
        pooled_only = not (return_tokens or hidden_states or self.full_sequences
                           or _watched(self.blocks[-1]))
        for layer in range(self.num_layers):
            prompt = _layer_prompt(deep_prompts, layer, x)
            if prompt is not None:
                x = self.replace_prompts(x, prompt)
            x = _before_block(hooks, layer, x)
            if states is not None:
                states.append(x.permute(1, 0, 2))
            if pooled_only and layer == self.num_layers - 1:
                cls = torch.zeros(x.shape[1], dtype=torch.long, device=x.device)
                block = self.blocks[layer]
                pooled = _add_residual(hooks, layer, block, x[:1],
                                       pooled_block(block, x, cls, padding).unsqueeze(0))
                return EncoderOutput(self.project(pooled[0]))
            x = self.run_block(layer, x, padding, hooks)
        tokens = x.permute(1, 0, 2)
        if states is not None:
            states.append(tokens)
        return EncoderOutput(self.pool(x), tokens if return_tokens else None, states)

    def forward(self, image, shallow_prompts=None, deep_prompts=None, keep_index=None,
                masked_patches=None, hooks=None):
        return self.encode(image, shallow_prompts, deep_prompts, keep_index,
                           masked_patches=masked_patches, hooks=hooks).features


@contextlib.contextmanager
def record_attention(blocks, average_heads=True):
    """Record the attention maps of stock CLIP blocks while the context is open.

    Yields a dict ``{block index: weights}``, weights ``[N, L, L]`` (or
    ``[N, heads, L, L]`` with ``average_heads=False``), filled by forward
    hooks that ask the stock ``nn.MultiheadAttention`` for ``need_weights``.
    """
    maps = {}
    handles = []

    def ask_weights(module, args, kwargs):
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = average_heads
        return args, kwargs

    for index, block in enumerate(blocks):
        def keep(module, args, kwargs, output, index=index):
            maps[index] = output[1]

        handles.append(block.attn.register_forward_pre_hook(ask_weights, with_kwargs=True))
        handles.append(block.attn.register_forward_hook(keep, with_kwargs=True))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
