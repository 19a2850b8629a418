"""ISP's structural prompt modules (Wang et al., "Integrated Structural Prompt
Learning for Vision-Language Models", arXiv 2507.05677).

The paper names a *self-structural* module (prompts <-> frozen tokens of the
same modality) and a *cross-structural* module (prompts <-> the other
modality); its equations could not be read, so the blocks below are the
project's reconstruction (docs/METHODS.md, "ISP"). Every block adds its output
through a learnable gate initialised at zero, so a freshly built ISP computes
exactly what its deep-prompt base (IVLP with the same prompts) computes.

Each module holds one gated attention block per prompted layer, with the
blocks' parameters stacked along a leading layer axis
(:class:`LayeredPromptAttention`): everything that depends on the prompts
alone is computed for all layers at once, once per step, and the part that
sees a layer's tokens is a few batched products. Checkpoints written with
the earlier one-module-per-layer layout load unchanged (their weights are
stacked on loading).

All blocks keep float32 weights; inputs in another dtype (fp16 CLIP tokens)
are cast to the weights' dtype and the result has the prompt's dtype.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipwb.errors import ConfigError

#: TRAINER.ISP.CROSS_MODE values; "maple" is not a module of its own (the
#: learner couples the prompts as MaPLe does, :mod:`clipwb.trainers.isp.learner`)
CROSS_MODES = ("cross_attention", "linear", "maple")
MODULE_MODES = ("cross_attention", "linear")


def check_maple_coupling(n_ctx, text_depth, vision_n_ctx, vision_depth, prefix="TRAINER.ISP"):
    """Raise ConfigError unless the vision prompt count and depth equal the
    text ones, as MaPLe's coupling (vision prompts = linear maps of the text
    prompts) makes them."""
    if (vision_n_ctx, vision_depth) != (n_ctx, text_depth):
        raise ConfigError(
            "{0}.CROSS_MODE maple makes the vision prompts linear maps of the text prompts, "
            "so they have the text prompts' count and depth: set {0}.N_CTX_VISION = "
            "N_CTX_TEXT ({1}) and {0}.PROMPT_DEPTH_VISION = PROMPT_DEPTH_TEXT ({2}); got {3} "
            "and {4}.".format(prefix, n_ctx, text_depth, vision_n_ctx, vision_depth))


def check_heads(width, heads, key):
    """Raise ConfigError unless ``width`` splits into ``heads`` heads."""
    if width < 1 or heads < 1 or width % heads:
        raise ConfigError("{}: width {} must be a positive multiple of the number of heads {} "
                          "(e.g. width 64 with 1, 2, 4 or 8 heads).".format(key, width, heads))


def _linear_init(num_layers, out_features, in_features):
    """``num_layers`` weights [out, in] and biases [out] initialised as
    ``nn.Linear``'s (uniform in +-1/sqrt(in))."""
    bound = 1.0 / math.sqrt(in_features)
    weight = torch.empty(num_layers, out_features, in_features).uniform_(-bound, bound)
    bias = torch.empty(num_layers, out_features).uniform_(-bound, bound)
    return nn.Parameter(weight), nn.Parameter(bias)


@dataclass
class PreparedQueries:
    """The prompt-only part of :class:`LayeredPromptAttention` for every layer
    (leading axis L): ``queries`` [L, Wk, heads * n] (the queries taken to
    token space and scaled); ``value_weight`` [L, heads, Wk, d_h] and
    ``value_bias`` [L, 1, width] (the key LayerNorm's affine folded in);
    ``out_weight`` [L, width, Wq] (the gate folded in) and ``residual``
    [L, n, Wq] (the prompts plus the gated output bias)."""

    queries: torch.Tensor
    value_weight: torch.Tensor
    value_bias: torch.Tensor
    out_weight: torch.Tensor
    residual: torch.Tensor

    def layers(self):
        """One :class:`PreparedQueries` per layer (for tokens [B, m, Wk] of
        that layer); split with ``unbind``, whose backward is a single stack
        (indexing each layer would add a zero-filled gradient per layer)."""
        fields = [getattr(self, f).unbind(0) for f in self.__dataclass_fields__]
        return [PreparedQueries(*parts) for parts in zip(*fields)]


def ignore_bias(ignore):
    """Additive score mask of ``ignore`` [B, m] (True: not attended), laid
    out as :meth:`LayeredPromptAttention.attend` forms its scores (token-major,
    the encoders' [m, B] order): [m * B, 1], -inf at ignored tokens."""
    bias = torch.zeros(ignore.shape, dtype=torch.float32, device=ignore.device)
    return bias.masked_fill(ignore, float("-inf")).t().reshape(-1, 1)


def _standardised_scores(flat, queries, eps=1e-5):
    """Scores of LayerNorm-standardised tokens without forming them.

    ``flat`` [N, W] raw tokens, ``queries`` [W, k]: returns ``scores`` [N, k]
    = ``((x - mean) / sqrt(var + eps)) @ queries`` (``F.layer_norm``'s
    standardisation), with ``mean`` and ``rstd`` [N, 1]. The mean comes out of
    the same product (a column of 1 / W beside the queries) and the variance,
    as in ``F.layer_norm``, from the centred tokens (two passes: exact also
    for tokens far from zero mean). The centred tokens are one temporary,
    read once by a norm; the scaled (LayerNorm) output is never formed."""
    width = flat.shape[1]
    extended = torch.cat([queries, queries.new_full((width, 1), 1.0 / width)], dim=1)
    raw = flat @ extended
    mean = raw[:, -1:]
    std = torch.linalg.vector_norm(flat - mean, dim=1, keepdim=True) * width ** -0.5
    rstd = torch.rsqrt(std.square() + eps)
    return (raw[:, :-1] - mean * queries.sum(0)) * rstd, mean, rstd


class LayeredPromptAttention(nn.Module):
    """``L`` gated attention blocks from prompts to tokens, one per layer:
    ``P_l' = P_l + g_l * W_o,l MHA_l(q = W_q,l LN_q,l(P_l), k = W_k,l LN_k,l(X),
    v = W_v,l LN_k,l(X))`` with ``d_h = width / heads``, gates ``g_l = 0`` at
    start. ``query_width`` / ``key_width`` may differ (cross-modal).

    The keys and values are never formed. With a handful of prompts ``n`` and
    many tokens ``m`` the products are taken in the cheap order:
    ``q_h k_h^T = (q_h W_k,h diag(s)) X^T`` (``X`` standardised, ``s`` the key
    LayerNorm's scale; its shift and a key bias would add a constant per
    query, which the softmax ignores, so the blocks have no key bias) and
    ``a_h v_h = W_v,h (diag(s) a_h X + shift) + b_v,h`` (attention rows sum
    to 1). It is the textbook function of the same parameters at
    ``O(n m W)`` per layer instead of ``O(m W width)``.
    """

    def __init__(self, num_layers, query_width, key_width, width=64, heads=1):
        super().__init__()
        check_heads(width, heads, "attention")
        self.num_layers, self.heads, self.width = num_layers, heads, width
        self.query_width, self.key_width = query_width, key_width
        self.query_norm_weight = nn.Parameter(torch.ones(num_layers, query_width))
        self.query_norm_bias = nn.Parameter(torch.zeros(num_layers, query_width))
        self.key_norm_weight = nn.Parameter(torch.ones(num_layers, key_width))
        self.key_norm_bias = nn.Parameter(torch.zeros(num_layers, key_width))
        self.query_weight, self.query_bias = _linear_init(num_layers, width, query_width)
        self.key_weight = _linear_init(num_layers, width, key_width)[0]
        self.value_weight, self.value_bias = _linear_init(num_layers, width, key_width)
        self.out_weight, self.out_bias = _linear_init(num_layers, query_width, width)
        self.gate = nn.Parameter(torch.zeros(num_layers))

    @property
    def dtype(self):
        return self.query_weight.dtype

    def prepare(self, prompts):
        """The prompt-only part for all layers; ``prompts`` [L, n, Wq]."""
        layers, n = prompts.shape[0], prompts.shape[1]
        heads, head_width, key_width = self.heads, self.width // self.heads, self.key_width
        p = F.layer_norm(prompts.to(self.dtype), (self.query_width,))
        p = p * self.query_norm_weight[:, None] + self.query_norm_bias[:, None]
        q = torch.baddbmm(self.query_bias[:, None], p, self.query_weight.transpose(1, 2))
        w_key = self.key_weight.reshape(layers, heads, head_width, key_width)
        queries = torch.einsum("lnhd,lhdk->lkhn", q.reshape(layers, n, heads, head_width), w_key)
        queries = queries * (self.key_norm_weight * head_width ** -0.5)[:, :, None, None]
        value_weight = (self.value_weight * self.key_norm_weight[:, None]).reshape(
            layers, heads, head_width, key_width).transpose(2, 3)
        value_bias = torch.baddbmm(self.value_bias[:, None], self.key_norm_bias[:, None],
                                   self.value_weight.transpose(1, 2))
        gate = self.gate[:, None, None]
        residual = prompts.to(self.dtype) + self.out_bias[:, None] * gate
        return PreparedQueries(queries.reshape(layers, key_width, heads * n), value_weight,
                               value_bias, self.out_weight.transpose(1, 2) * gate, residual)

    def attend(self, prepared, tokens, ignore=None):
        """The prompts of ``prepared`` after the gated update from ``tokens``.

        One layer (``prepared.layers()[l]``): ``tokens`` [B, m, Wk], ``ignore``
        an :func:`ignore_bias` of [B, m] (or None); returns [B, n, Wq]. All
        layers (``prepare(...)``): ``tokens`` [L, m, Wk], no ``ignore``;
        returns [L, n, Wq]. The result has the weights' dtype.
        """
        heads = self.heads
        if prepared.queries.dim() == 3:  # every layer at once, tokens [L, m, Wk]
            x = F.layer_norm(tokens.to(self.dtype), (self.key_width,))
            if ignore is not None:
                raise ValueError("attend: ignore is for one layer's tokens [B, m, Wk]")
            mixed = torch.bmm(torch.bmm(x, prepared.queries).softmax(dim=1).transpose(1, 2), x)
            if heads == 1:
                values = torch.baddbmm(prepared.value_bias, mixed, prepared.value_weight[:, 0])
            else:
                values = torch.matmul(mixed.unflatten(1, (heads, -1)), prepared.value_weight)
                values = values.transpose(1, 2).flatten(2) + prepared.value_bias
            return torch.baddbmm(prepared.residual, values, prepared.out_weight)
        # one layer: standardise the tokens inside the products (no LayerNorm
        # output, no copy of the encoders' token-major [m, B, W] storage)
        seq = tokens.transpose(0, 1).to(self.dtype)  # [m, B, Wk]
        m, batch = seq.shape[0], seq.shape[1]
        scores, mean, rstd = _standardised_scores(seq.reshape(m * batch, -1), prepared.queries)
        if ignore is not None:
            scores = scores + ignore.to(scores.dtype)
        # a X_hat = (a / std) X - sum(a mean / std): the softmax over the tokens
        # folded with the standardisation
        weights = scores.view(m, batch, -1).softmax(dim=0) * rstd.view(m, batch, 1)
        shift = (weights * mean.view(m, batch, 1)).sum(dim=0).unsqueeze(-1)  # [B, h n, 1]
        mixed = torch.bmm(weights.permute(1, 2, 0), seq.transpose(0, 1)) - shift  # [B, h n, Wk]
        if heads == 1:
            values = torch.addmm(prepared.value_bias, mixed.reshape(-1, self.key_width),
                                 prepared.value_weight[0])  # [B n, width]
        else:  # per head: [h, B n, Wk] @ [h, Wk, d]
            per_head = mixed.unflatten(1, (heads, -1)).transpose(0, 1).reshape(
                heads, -1, self.key_width)
            values = torch.bmm(per_head, prepared.value_weight).transpose(0, 1).reshape(
                -1, self.width) + prepared.value_bias
        update = (values @ prepared.out_weight).reshape(batch, -1, self.query_width)
        return update + prepared.residual

    def forward(self, prompts, tokens):
        """Every layer at once: ``prompts`` [L, n, Wq], ``tokens`` [L, m, Wk]."""
        return self.attend(self.prepare(prompts), tokens).to(prompts.dtype)

    # -- checkpoints of the one-module-per-layer layout --------------------------
    _LEGACY_NAMES = {
        "attn.norm_query.weight": "query_norm_weight", "attn.norm_query.bias": "query_norm_bias",
        "attn.norm_key.weight": "key_norm_weight", "attn.norm_key.bias": "key_norm_bias",
        "attn.query.weight": "query_weight", "attn.query.bias": "query_bias",
        "attn.key.weight": "key_weight", "attn.key.bias": None,
        "attn.value.weight": "value_weight", "attn.value.bias": "value_bias",
        "attn.out.weight": "out_weight", "attn.out.bias": "out_bias", "gate": "gate",
    }

    def stack_legacy(self, state_dict, old_prefix, new_prefix):
        """Rewrite ``old_prefix + "<layer>.<name>"`` entries of the earlier
        per-layer layout in ``state_dict`` as this module's stacked entries."""
        if old_prefix + "0.gate" not in state_dict:
            return
        for old, new in self._LEGACY_NAMES.items():
            parts = [state_dict.pop("{}{}.{}".format(old_prefix, i, old), None)
                     for i in range(self.num_layers)]
            if new is not None and all(p is not None for p in parts):
                stacked = torch.stack(parts)
                state_dict[new_prefix + new] = stacked.flatten() if new == "gate" else stacked


class SelfStructuralPrompts(nn.Module):
    """Self-structural prompts of one modality (INFERRED design, spec item 2).

    For prompted layer ``l`` (1..depth-1) the layer's prompts attend to the
    frozen tokens ``X_l`` of the same encoder at that layer:
    ``P_l' = P_l + gamma_l * Attn(P_l W_q, X_l W_k, X_l W_v)``, one gated
    block per layer. ``P_l'`` is per sequence ([B, n, W]): per class for
    text, per image for vision.

    Use: ``prepared = module.prepare(prompts)`` once per forward (the stacked
    deep prompts [L, n, W]; a list of per-layer parts), then
    ``module(index, prepared, tokens)`` at each layer.
    """

    def __init__(self, token_width, num_layers, width=64, heads=1):
        super().__init__()
        self.attn = LayeredPromptAttention(num_layers, token_width, token_width, width, heads)

    @property
    def num_layers(self):
        return self.attn.num_layers

    def prepare(self, prompts):
        return self.attn.prepare(prompts).layers()

    def forward(self, index, prepared, frozen_tokens, ignore=None):
        """Prompt of deep layer ``index + 1`` after attending to
        ``frozen_tokens`` [B, m, W] (``ignore``: an :func:`ignore_bias` of
        [B, m], or None); returns [B, n, W] in the weights' dtype."""
        return self.attn.attend(prepared[index], frozen_tokens, ignore)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.attn.stack_legacy(state_dict, prefix + "blocks.", prefix + "attn.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class CrossStructuralPrompts(nn.Module):
    """Cross-structural prompts: text and vision prompts of the same layer
    exchange information (INFERRED design, spec item 3).

    ``cross_attention`` (default): for every layer with prompts in both
    encoders, ``P_t' = P_t + g_t * Attn(P_t, P_v)`` and
    ``P_v' = P_v + g_v * Attn(P_v, P_t)``, the key / value maps taking one
    width to the other (all layers in one batched pass). ``linear``
    (MaPLe-style one-way coupling beside independent vision prompts):
    ``P_v' = P_v + g_v * Linear(P_t)``. Both updates use the prompts before
    the exchange; the gates start at zero. (CROSS_MODE ``maple``, MaPLe's own
    coupling ``P_v = Linear(P_t)``, needs no module: see the learner.)
    """

    def __init__(self, text_width, vision_width, num_layers, mode="cross_attention",
                 width=64, heads=1):
        super().__init__()
        if mode not in MODULE_MODES:
            raise ConfigError("cross-structural module mode {!r} is not valid: use one of {}."
                              .format(mode, ", ".join(MODULE_MODES)))
        self.mode = mode
        self.num_layers = num_layers
        if mode == "cross_attention":
            self.to_text = LayeredPromptAttention(num_layers, text_width, vision_width, width,
                                                  heads)
            self.to_vision = LayeredPromptAttention(num_layers, vision_width, text_width, width,
                                                    heads)
        else:
            self.coupling = nn.ModuleList(
                nn.Linear(text_width, vision_width) for _ in range(num_layers))
            self.gates = nn.Parameter(torch.zeros(num_layers))

    def forward(self, text_prompts, vision_prompts):
        """Lists of per-layer prompts [n_t, W_t] / [n_v, W_v] (layer 0 first);
        layers past ``num_layers`` pass unchanged. Returns the two new lists."""
        text, vision = list(text_prompts), list(vision_prompts)
        layers = min(self.num_layers, len(text), len(vision))
        if layers == 0:
            return text, vision
        if self.mode == "cross_attention":
            p_t, p_v = torch.stack(text[:layers]), torch.stack(vision[:layers])
            if layers < self.num_layers:
                raise ValueError("cross-structural prompts: {} layers of prompts for {} "
                                 "blocks".format(layers, self.num_layers))
            text[:layers] = self.to_text(p_t, p_v).unbind(0)
            vision[:layers] = self.to_vision(p_v, p_t).unbind(0)
        else:
            for layer in range(layers):
                vision[layer] = vision[layer] + self.gates[layer] * self.coupling[layer](
                    text[layer])
        return text, vision

    def gate_parameters(self):
        """Every gate tensor of the module."""
        if self.mode == "linear":
            return [self.gates]
        return [self.to_text.gate, self.to_vision.gate]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.mode == "cross_attention":
            for name in ("to_text", "to_vision"):
                getattr(self, name).stack_legacy(state_dict, prefix + name + ".",
                                                 prefix + name + ".")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
