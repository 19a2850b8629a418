"""ISP's structural prompt modules (Wang et al., "Integrated Structural Prompt
Learning for Vision-Language Models", arXiv 2507.05677).

The paper names a *self-structural* module (prompts <-> frozen tokens of the
same modality) and a *cross-structural* module (prompts <-> the other
modality); its equations could not be read, so the blocks below are the
project's reconstruction (docs/METHODS.md, "ISP"). Every block adds its output
through a learnable gate initialised at zero, so a freshly built ISP computes
exactly what its deep-prompt base (IVLP with the same prompts) computes.

All blocks keep float32 weights; inputs in another dtype (fp16 CLIP tokens)
are cast to the weights' dtype and the result has the prompt's dtype.
"""
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError

CROSS_MODES = ("cross_attention", "linear")


def check_heads(width, heads, key):
    """Raise ConfigError unless ``width`` splits into ``heads`` heads."""
    if width < 1 or heads < 1 or width % heads:
        raise ConfigError("{}: width {} must be a positive multiple of the number of heads {} "
                          "(e.g. width 64 with 1, 2, 4 or 8 heads).".format(key, width, heads))


class PromptAttention(nn.Module):
    """Multi-head attention from prompts (queries) to tokens (keys / values)
    at a reduced width: ``out(softmax(q k^T / sqrt(d_h)) v)``.

    ``query_width`` / ``key_width`` may differ (cross-modal: the key / value
    maps are the linear maps between the two widths). Inputs are layer-normed.
    """

    def __init__(self, query_width, key_width, width=64, heads=1):
        super().__init__()
        check_heads(width, heads, "attention")
        self.heads = heads
        self.norm_query = nn.LayerNorm(query_width)
        self.norm_key = nn.LayerNorm(key_width)
        self.query = nn.Linear(query_width, width)
        self.key = nn.Linear(key_width, width)
        self.value = nn.Linear(key_width, width)
        self.out = nn.Linear(width, query_width)

    def _split(self, x):  # [B, L, width] -> [B, heads, L, width / heads]
        return x.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def forward(self, prompts, tokens, ignore=None):
        """``prompts`` [B, n, Wq], ``tokens`` [B, m, Wk]; ``ignore`` [B, m]
        (True: a padding token no prompt attends to). Returns [B, n, Wq]."""
        dtype = self.query.weight.dtype
        q = self._split(self.query(self.norm_query(prompts.to(dtype))))
        kv = self.norm_key(tokens.to(dtype))
        k, v = self._split(self.key(kv)), self._split(self.value(kv))
        mask = None
        if ignore is not None:
            mask = (~ignore.to(q.device)).view(ignore.shape[0], 1, 1, ignore.shape[1])
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x.transpose(1, 2).reshape(prompts.shape[0], prompts.shape[1], -1)
        return self.out(x)


class GatedPromptAttention(nn.Module):
    """``P' = P + gamma * Attn(P, X)`` with a scalar gate gamma = 0 at start."""

    def __init__(self, query_width, key_width, width=64, heads=1):
        super().__init__()
        self.attn = PromptAttention(query_width, key_width, width, heads)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, prompts, tokens, ignore=None):
        batch = tokens.shape[0]
        if prompts.dim() == 2:
            prompts = prompts.unsqueeze(0).expand(batch, -1, -1)
        update = self.attn(prompts, tokens, ignore)
        return prompts + (self.gate * update).to(prompts.dtype)


class SelfStructuralPrompts(nn.Module):
    """Self-structural prompts of one modality (INFERRED design, spec item 2).

    For prompted layer ``l`` (1..depth-1) the layer's prompts attend to the
    frozen tokens ``X_l`` of the same encoder at that layer:
    ``P_l' = P_l + gamma_l * Attn(P_l W_q, X_l W_k, X_l W_v)``, one gated
    block per layer. ``P_l'`` is per sequence ([B, n, W]): per class for
    text, per image for vision.
    """

    def __init__(self, token_width, num_layers, width=64, heads=1):
        super().__init__()
        self.blocks = nn.ModuleList(
            GatedPromptAttention(token_width, token_width, width, heads)
            for _ in range(num_layers))

    def forward(self, index, prompt, frozen_tokens, ignore=None):
        """Prompt of deep layer ``index + 1`` ([n, W] or [B, n, W]) after
        attending to ``frozen_tokens`` [B, m, W]."""
        return self.blocks[index](prompt, frozen_tokens, ignore)


class CrossStructuralPrompts(nn.Module):
    """Cross-structural prompts: text and vision prompts of the same layer
    exchange information (INFERRED design, spec item 3).

    ``cross_attention`` (default): for every layer with prompts in both
    encoders, ``P_t' = P_t + g_t * Attn(P_t, P_v)`` and
    ``P_v' = P_v + g_v * Attn(P_v, P_t)``, the key / value maps taking one
    width to the other. ``linear`` (MaPLe-style one-way coupling):
    ``P_v' = P_v + g_v * Linear(P_t)``. Both updates use the prompts before
    the exchange; the gates start at zero.
    """

    def __init__(self, text_width, vision_width, num_layers, mode="cross_attention",
                 width=64, heads=1):
        super().__init__()
        if mode not in CROSS_MODES:
            raise ConfigError("cross-structural mode {!r} is not valid: use one of {}.".format(
                mode, ", ".join(CROSS_MODES)))
        self.mode = mode
        self.num_layers = num_layers
        if mode == "cross_attention":
            self.to_text = nn.ModuleList(
                GatedPromptAttention(text_width, vision_width, width, heads)
                for _ in range(num_layers))
            self.to_vision = nn.ModuleList(
                GatedPromptAttention(vision_width, text_width, width, heads)
                for _ in range(num_layers))
        else:
            self.coupling = nn.ModuleList(
                nn.Linear(text_width, vision_width) for _ in range(num_layers))
            self.gates = nn.Parameter(torch.zeros(num_layers))

    def forward(self, text_prompts, vision_prompts):
        """Lists of per-layer prompts [n_t, W_t] / [n_v, W_v] (layer 0 first);
        layers past ``num_layers`` pass unchanged. Returns the two new lists."""
        text, vision = list(text_prompts), list(vision_prompts)
        for layer in range(min(self.num_layers, len(text), len(vision))):
            p_t, p_v = text_prompts[layer], vision_prompts[layer]
            if self.mode == "cross_attention":
                text[layer] = self.to_text[layer](p_t.unsqueeze(0), p_v.unsqueeze(0))[0]
                vision[layer] = self.to_vision[layer](p_v.unsqueeze(0), p_t.unsqueeze(0))[0]
            else:
                vision[layer] = p_v + self.gates[layer] * self.coupling[layer](p_t)
        return text, vision

    def gate_parameters(self):
        """Every gate tensor of the module."""
        if self.mode == "linear":
            return [self.gates]
        return [m.gate for m in list(self.to_text) + list(self.to_vision)]
