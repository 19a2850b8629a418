"""DiSa's saliency-aware patch masking (spec ``disa.md`` section 2.4).

The frozen CLIP image encoder runs once per training step and returns both
its CLS feature f_o and its last-block patch tokens; from those the patches
are scored (saliency) and the least salient ones are removed before the
prompted ViT sees the image (token dropping) or zeroed in the input
(``zero_pixels``). The saliency sources (``TRAINER.DISA.SALIENCY``):

- ``text``: s_i = softmax_i(100 cos(z_i, g_o[y])), z_i = ln_post(t_i) proj, t_i
  the frozen last block's output at patch i, g_o[y] the frozen text feature
  of the true class;
- ``value`` / ``csa`` / ``vv`` (and ``value_attn`` / ``csa_attn`` /
  ``vv_attn``): the same softmax of cosines, with z_i the dense features of
  ``disa.dense`` (MaskCLIP's value path, SCLIP's q-q + k-k attention, both
  with the last block's residual and MLP, CLIP Surgery's v-v path over the
  last blocks; the ``_attn`` ones: the last block's attention branch alone);
- ``cls_attention``: the last block's CLS-to-patch attention (head mean),
  renormalised;
- ``random``: uniform random scores (the floor).

The CLS token and the vision prompts are never dropped:
``PromptedImageEncoder.embed`` keeps CLS and the prompts are appended after
the kept patches.

Patch ``i`` of a ``gh x gw`` grid covers rows ``(i // gw) * p ...`` and
columns ``(i % gw) * p ...`` of the image (``p`` = patch size), the order of
CLIP's ``conv1`` output flattened row by row.
"""
import contextlib
import math
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F

from clipwb.errors import ConfigError

from clipwb.trainers.kit.prompted_encoders import record_attention
from clipwb.trainers.disa.dense import DENSE_SOURCES, dense_tokens

SALIENCY_SOURCES = ("text", "cls_attention", "random") + DENSE_SOURCES
MASK_SELECTIONS = ("topk", "sample")
#: temperature of the text-to-patch saliency softmax (spec 2.4: softmax x 100)
SALIENCY_SCALE = 100.0


@dataclass
class FrozenImagePass:
    """One image forward (frozen CLIP, or the prompted one for measurements).

    ``features``: unit-norm CLS features f_o [B, D]; ``patch_features``:
    unit-norm ``ln_post(token) @ proj`` of the last block's patch tokens
    [B, P, D]; ``cls_attention``: the last block's CLS-to-patch attention
    [B, P] (head-averaged), when it was asked for; ``block_inputs``: each
    block's input [B, L, W] (the dense sources), when it was asked for.
    """

    features: torch.Tensor
    patch_features: torch.Tensor
    cls_attention: Optional[torch.Tensor] = None
    block_inputs: Optional[List[torch.Tensor]] = None

    @property
    def n_patches(self):
        return self.patch_features.shape[1]

    @property
    def last_input(self):
        """The last block's input [B, L, W] (None without block inputs)."""
        return None if self.block_inputs is None else self.block_inputs[-1]


def pass_needs(source):
    """``(with_attention, with_block_inputs)`` the saliency ``source`` needs
    from the image pass (None: neither)."""
    return source == "cls_attention", source in DENSE_SOURCES


def image_pass(image_encoder, images, keep_index=None, with_attention=False,
               with_block_inputs=False, shallow_prompts=None, deep_prompts=None):
    """One pass of ``image_encoder`` (prompt-free unless prompts are given);
    see :class:`FrozenImagePass`. Prompt tokens sit after the patches and are
    left out of the patch outputs."""
    if with_attention:
        recorder = record_attention([image_encoder.blocks[-1]])
    else:
        recorder = contextlib.nullcontext({})
    with recorder as maps:
        out = image_encoder.encode(images, shallow_prompts, deep_prompts, keep_index,
                                   return_tokens=True, hidden_states=with_block_inputs)
    n_prompts = 0 if shallow_prompts is None else shallow_prompts.shape[-2]
    end = out.tokens.shape[1] - n_prompts
    patches = image_encoder.project(out.tokens[:, 1:end])
    attention = maps[0][:, 0, 1:end].float() if with_attention else None
    inputs = out.hidden_states[:-1] if with_block_inputs else None
    return FrozenImagePass(F.normalize(out.features.float(), dim=-1),
                           F.normalize(patches.float(), dim=-1), attention, inputs)


@torch.no_grad()
def frozen_image_pass(image_encoder, images, keep_index=None, with_attention=False,
                      with_block_inputs=False):
    """Run the prompt-free ViT once; see :class:`FrozenImagePass`."""
    return image_pass(image_encoder, images, keep_index, with_attention, with_block_inputs)


def dense_patch_features(image_encoder, frozen, source):
    """Unit-norm ``ln_post(dense) @ proj`` [B, P, D] of the patches, dense =
    ``disa.dense.dense_tokens`` of ``source`` on ``frozen.block_inputs``."""
    tokens = dense_tokens(image_encoder.blocks, frozen.block_inputs, source)
    patches = image_encoder.project(tokens[:, 1:1 + frozen.n_patches])
    return F.normalize(patches.float(), dim=-1)


def saliency_scores(source, image_encoder, frozen, class_text_features, labels,
                    generator=None):
    """Per-patch saliency [B, P] of ``source`` (SALIENCY_SOURCES) from an
    image pass made with ``pass_needs(source)``; rows sum to one."""
    if source == "text":
        return text_saliency(frozen.patch_features, class_text_features, labels)
    if source in DENSE_SOURCES:
        dense = dense_patch_features(image_encoder, frozen, source)
        return text_saliency(dense, class_text_features, labels)
    if source == "cls_attention":
        return cls_attention_saliency(frozen.cls_attention)
    if source == "random":
        batch, n_patches = frozen.patch_features.shape[:2]
        return random_saliency(batch, n_patches, device=frozen.patch_features.device,
                               generator=generator)
    raise ConfigError("saliency source {!r} is not valid: use one of {}".format(
        source, ", ".join(SALIENCY_SOURCES)))


def text_saliency(patch_features, class_text_features, labels, scale=SALIENCY_SCALE):
    """Text-guided saliency (spec 2.4, step 2), the recommended source:
    s_i = softmax_i(scale * cos(z_i, g_o[y])) over the P patches, z_i the
    frozen projected patch tokens, g_o[y] the frozen text feature of the
    ground-truth class. Returns [B, P], each row summing to one."""
    target = F.normalize(class_text_features[labels].float(), dim=-1)
    cosine = torch.einsum("bpd,bd->bp", patch_features.float(), target)
    return (scale * cosine).softmax(dim=-1)


def cls_attention_saliency(cls_attention):
    """Alternative source: the frozen last block's CLS-to-patch attention,
    renormalised over the patches. [B, P] -> [B, P]."""
    weights = cls_attention.float().clamp_min(0)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def random_saliency(batch, n_patches, device=None, generator=None):
    """Control: uniformly random scores (the mask ignores the image)."""
    scores = torch.rand(batch, n_patches, generator=generator, device=device)
    return scores / scores.sum(dim=-1, keepdim=True)


def keep_count(n_patches, ratio):
    """Patches kept for mask ratio ``ratio``: round((1 - r) * P), half up,
    at least one."""
    if not 0 <= ratio < 1:
        raise ConfigError("mask ratio {!r} must be in [0, 1)".format(ratio))
    return max(1, int(math.floor((1 - ratio) * n_patches + 0.5)))


def drop_weights(saliency):
    """Drop weights [B, P] of ``MASK_SELECTION sample``: ``w_i = 1 - u_i``,
    ``u_i = rank_i / (P - 1)`` the saliency rescaled to [0, 1] by its rank
    within the image (0: the least salient patch, 1: the most salient; tied
    patches share their mean rank). The least salient patch weighs 1, a
    unique most salient one 0, equal scores give equal weights. Ranks, not
    the raw scores: the sources' scores differ in scale and peakedness (a
    softmax x 100, an attention row), and 1 - s_i of scores that sum to one
    is close to 1 for every patch, a nearly uniform draw."""
    s = saliency.float()
    below = (s.unsqueeze(1) < s.unsqueeze(2)).sum(-1)  # [B, P]: patches less salient
    tied = (s.unsqueeze(1) == s.unsqueeze(2)).sum(-1)   # itself included
    ranks = below + (tied - 1) / 2
    return 1 - ranks / max(s.shape[1] - 1, 1)


def select_patches(saliency, ratio, selection="topk", generator=None):
    """Indices [B, K] (ascending) of the patches to keep, K = keep_count(P, r).

    ``topk`` (recommended, spec 2.4 step 3): the K most salient patches.
    ``sample`` (spec section 5, item 2, "drop with probability ~ 1 - s_i"):
    P - K patches dropped, drawn without replacement with probability
    proportional to ``drop_weights(saliency)`` = 1 - (saliency rescaled to
    [0, 1] by rank); the most salient patch is always kept.
    """
    batch, n_patches = saliency.shape
    k = keep_count(n_patches, ratio)
    if selection == "topk":
        keep = saliency.topk(k, dim=1).indices
    elif selection == "sample":
        n_drop = n_patches - k
        if n_drop == 0:
            keep = torch.arange(n_patches, device=saliency.device).expand(batch, -1)
        else:
            drop = torch.multinomial(drop_weights(saliency), n_drop, replacement=False,
                                     generator=generator)
            mask = torch.ones_like(saliency, dtype=torch.bool).scatter(1, drop, False)
            keep = mask.nonzero()[:, 1].view(batch, k)
    else:
        raise ConfigError("mask selection {!r} is not valid: use one of {}".format(
            selection, ", ".join(MASK_SELECTIONS)))
    return keep.sort(dim=1).values


def keep_mask(keep_index, n_patches):
    """Boolean [B, P] mask, True for the kept patches."""
    mask = torch.zeros(keep_index.shape[0], n_patches, dtype=torch.bool,
                       device=keep_index.device)
    return mask.scatter(1, keep_index.long(), True)


def pixel_mask(keep_index, image_size, patch_size):
    """[B, 1, H, W] float mask: 1 on the pixels of kept patches, 0 elsewhere
    (pixels beyond the last full patch, which CLIP ignores, count as kept)."""
    height, width = image_size
    grid_h, grid_w = height // patch_size, width // patch_size
    mask = keep_mask(keep_index, grid_h * grid_w).float().view(-1, 1, grid_h, grid_w)
    mask = mask.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)
    return F.pad(mask, (0, width - mask.shape[-1], 0, height - mask.shape[-2]), value=1.0)


def zero_dropped_patches(images, keep_index, patch_size):
    """``zero_pixels`` masking (spec section 5, item 3): the dropped patches
    of the (normalised) images set to zero, the kept ones unchanged."""
    mask = pixel_mask(keep_index, images.shape[-2:], patch_size)
    return images * mask.to(images.dtype)
