"""Dense (per-patch) CLIP features from the value path of the last ViT block.

CLIP's last-block patch tokens, projected and compared with a text feature,
localise poorly: the query-key attention of the last block mixes every patch
with the same few global tokens (MaskCLIP, Zhou, Loy, Dai, "Extract Free Dense
Labels from CLIP", ECCV 2022; CLIP Surgery, Li et al. 2023). The training-free
fixes replace that block's attention mixing and keep its value path. With
``x`` the last block's input [B, L, W] (after ``ln_pre`` and the earlier
blocks, prompts included), ``h = ln_1(x)`` and, from the stock
``nn.MultiheadAttention`` (``in_proj_weight`` = [W_q; W_k; W_v],
``in_proj_bias`` = [b_q; b_k; b_v], ``out_proj``), per head ``j`` of
``d = W / heads`` channels:

    q = h W_q^T + b_q,  k = h W_k^T + b_k,  v = h W_v^T + b_v
    dense(x) = out_proj(concat_j A_j v_j)

with the mixing ``A_j`` [L, L]:

- ``value`` (MaskCLIP): A = I, i.e. dense(x) = out_proj(v) token by token;
- ``vv`` (CLIP Surgery's v-v attention, Li, Wang, Lu, Su, "CLIP Surgery for
  Better Explainability with Enhancement in Open-Vocabulary Tasks", arXiv
  2304.05653): A = softmax(v v^T / sqrt(d));
- ``csa`` (SCLIP's correlative self-attention, Wang, Mei, Yuille, "SCLIP:
  Rethinking Self-Attention for Dense Vision-Language Inference", ECCV 2024,
  arXiv 2312.01597): A = softmax(q q^T / sqrt(d)) + softmax(k k^T / sqrt(d)).

MaskCLIP describes its dense features as the last attention's value
embedding followed by its last linear layer (both as 1x1 convolutions);
here, for all three paths, the block's residual and MLP are skipped: the
dense feature is the attention branch alone. The patch features are then
``ln_post(dense) @ proj`` (the encoder's ``project``), compared with the class
text feature exactly as the ``text`` source compares the ordinary tokens.
Nothing here copies the block: it reads the block's own parameters.
"""
import math

import torch
import torch.nn.functional as F

VALUE_PATHS = ("value", "vv", "csa")


def query_key_value(block, x):
    """``q, k, v`` [B, L, W] of the stock block ``block`` on its input ``x``
    [B, L, W] (batch first): ``ln_1`` then the attention's input projection."""
    attn = block.attn
    h = block.ln_1(x)
    return F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)


def _heads(t, n_heads):
    """[B, L, W] -> [B, heads, L, d]."""
    batch, length, width = t.shape
    return t.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def _self_softmax(t):
    """softmax(t t^T / sqrt(d)) per head, t [B, heads, L, d]."""
    return (t @ t.transpose(-2, -1) / math.sqrt(t.shape[-1])).softmax(dim=-1)


def dense_tokens(block, x, path="value"):
    """``dense(x)`` [B, L, W] of the module docstring for ``path`` in
    VALUE_PATHS (the block's output projection applied, nothing else)."""
    if path not in VALUE_PATHS:
        raise ValueError("value path {!r}: use one of {}".format(path, ", ".join(VALUE_PATHS)))
    attn = block.attn
    q, k, v = query_key_value(block, x)
    if path == "value":
        mixed = v
    else:
        n_heads = attn.num_heads
        vh = _heads(v, n_heads)
        if path == "vv":
            weights = _self_softmax(vh)
        else:
            weights = _self_softmax(_heads(q, n_heads)) + _self_softmax(_heads(k, n_heads))
        mixed = (weights @ vh).transpose(1, 2).reshape(v.shape)
    return attn.out_proj(mixed)
