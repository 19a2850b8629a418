"""Dense (per-patch) CLIP features the training-free dense-CLIP methods use.

CLIP's last-block patch tokens, projected and compared with a text feature,
localise poorly: the query-key attention of the last blocks mixes every
patch with the same few global tokens (MaskCLIP; CLIP Surgery). Each method
below replaces that mixing and otherwise reads the ViT's own parameters
(nothing is copied). For a stock block with input ``x`` [B, L, W],
``h = ln_1(x)`` and, from its ``nn.MultiheadAttention`` (``in_proj_weight``
= [W_q; W_k; W_v], ``in_proj_bias`` = [b_q; b_k; b_v], ``out_proj``), per
head ``j`` of ``d = W / heads`` channels:

    q = h W_q^T + b_q,  k = h W_k^T + b_k,  v = h W_v^T + b_v
    attn_A(x) = out_proj(concat_j A_j v_j)

with the mixing ``A_j`` [L, L] one of

    identity:  A = I (each token its own value)
    vv:        A = softmax(v v^T / sqrt(d))
    csa:       A = softmax(q q^T / sqrt(d)) + softmax(k k^T / sqrt(d))

The sources (``x`` the last block's input, ``mlp`` / ``ln_2`` the last
block's own):

- ``value`` -- MaskCLIP (Zhou, Loy, Dai, "Extract Free Dense Labels from
  CLIP", ECCV 2022): the last block with its attention replaced by the
  value path, residual and MLP kept:
  ``y = x + attn_I(x);  dense = y + mlp(ln_2(y))``;
- ``csa`` -- SCLIP (Wang, Mei, Yuille, "SCLIP: Rethinking Self-Attention
  for Dense Vision-Language Inference", ECCV 2024, arXiv 2312.01597): the
  last block with its correlative self-attention, residual and MLP kept:
  ``y = x + attn_csa(x);  dense = y + mlp(ln_2(y))``;
- ``vv`` -- CLIP Surgery's architecture surgery (Li, Wang, Duan, Li,
  "CLIP Surgery for Better Explainability with Enhancement in
  Open-Vocabulary Tasks", arXiv 2304.05653): a second path beside the stock
  one through the last ``n = min(SURGERY_BLOCKS, depth)`` blocks (the
  authors' code: the last 6 blocks, whatever the depth). It starts from the
  input ``x_s`` of block ``s = depth - n`` and adds, at every block ``b >=
  s``, the v-v attention of the *stock* path's input ``x_b`` to that block;
  no MLP:
  ``dense = x_s + sum_{b=s}^{depth-1} attn_vv^{(b)}(x_b)``.
  (Its second part, "feature surgery", subtracts the mean over all classes
  of the class-wise similarity maps; it is not applied here: the saliency
  compares each image with its own class only.)
- ``value_attn``, ``csa_attn``, ``vv_attn``: the last block's attention
  branch alone, ``dense = attn_A(x)`` with A = I, csa, vv (no residual, no
  MLP, one block): the simplification these sources had before they
  followed the papers, kept for comparison.

The patch features are then ``ln_post(dense) @ proj`` (the encoder's
``project``), compared with the class text feature exactly as the ``text``
source compares the ordinary tokens.
"""
import math

import torch.nn.functional as F

DENSE_SOURCES = ("value", "csa", "vv", "value_attn", "csa_attn", "vv_attn")
#: blocks CLIP Surgery's v-v path runs through (its code: the last 6)
SURGERY_BLOCKS = 6
MIXINGS = ("identity", "vv", "csa")


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


def mixed_attention(block, x, mixing):
    """``attn_A(x)`` [B, L, W] of the module docstring: the block's attention
    branch with the mixing ``A`` (MIXINGS) in place of softmax(q k^T)."""
    q, k, v = query_key_value(block, x)
    if mixing == "identity":
        mixed = v
    else:
        n_heads = block.attn.num_heads
        vh = _heads(v, n_heads)
        if mixing == "vv":
            weights = _self_softmax(vh)
        else:
            weights = _self_softmax(_heads(q, n_heads)) + _self_softmax(_heads(k, n_heads))
        mixed = (weights @ vh).transpose(1, 2).reshape(v.shape)
    return block.attn.out_proj(mixed)


def residual_block(block, x, mixing):
    """The block with its attention mixing replaced, residual and MLP kept:
    ``y = x + attn_A(x); y + mlp(ln_2(y))`` (MaskCLIP, SCLIP)."""
    y = x + mixed_attention(block, x, mixing)
    return y + block.mlp(block.ln_2(y))


def surgery_path(blocks, block_inputs, n_blocks=SURGERY_BLOCKS):
    """CLIP Surgery's v-v path: ``x_s + sum_{b >= s} attn_vv^{(b)}(x_b)``
    over the last ``min(n_blocks, depth)`` blocks, ``x_b`` the stock path's
    input to block ``b``."""
    start = len(blocks) - min(n_blocks, len(blocks))
    out = block_inputs[start]
    for block, x in zip(blocks[start:], block_inputs[start:]):
        out = out + mixed_attention(block, x, "vv")
    return out


def dense_tokens(blocks, block_inputs, source="value"):
    """``dense`` [B, L, W] of the module docstring for ``source`` in
    DENSE_SOURCES; ``blocks`` the ViT's stock blocks, ``block_inputs`` each
    block's input [B, L, W] on the stock (possibly prompted) path."""
    if source not in DENSE_SOURCES:
        raise ValueError("dense source {!r}: use one of {}".format(
            source, ", ".join(DENSE_SOURCES)))
    if len(block_inputs) < len(blocks):
        raise ValueError("dense_tokens needs the input of each of the {} blocks, got {}".format(
            len(blocks), len(block_inputs)))
    last, x = blocks[-1], block_inputs[len(blocks) - 1]
    if source == "value":
        return residual_block(last, x, "identity")
    if source == "csa":
        return residual_block(last, x, "csa")
    if source == "vv":
        return surgery_path(blocks, block_inputs)
    mixing = {"value_attn": "identity", "csa_attn": "csa", "vv_attn": "vv"}[source]
    return mixed_attention(last, x, mixing)
