"""How well a patch saliency finds the object, given its pixel mask.

For one image with ``P`` patches of ``p x p`` pixels, the shape's pixel mask
``m`` (share of each pixel the shape covers, ``clipwb.toyworld.render.shape_mask``),
a saliency ``s`` [P] and the kept set ``K`` (``select_patches``: the top
``round((1 - r) P)`` patches at mask ratio ``r``):

- a_i = sum of m over patch i (shape area in the patch, in pixels);
  b_i = p^2 - a_i (background area); the patch is *on the shape* when
  a_i / p^2 >= ``on_shape`` (S = those patches);
- pointing game: argmax_i s_i is in S (1 or 0);
- shape kept = sum_{i in K} a_i / sum_i a_i;
- background kept = sum_{i in K} b_i / sum_i b_i;
- kept-patch IoU = |K ∩ S| / |K ∪ S|.

Each is averaged over the images; ``summarise`` adds the 95 % half-width
1.96 sd / sqrt(n) of the mean. The ``oracle`` saliency s_i = a_i (keep the
patches with the most shape) is the ceiling, random saliency the floor.
"""
import math

import torch

METRICS = ("pointing", "shape_kept", "background_kept", "iou")
#: default share of a patch the shape must cover for the patch to be "on the shape"
ON_SHAPE = 0.1


def patch_areas(masks, patch):
    """Pixel masks [N, H, W] -> shape area a [N, P] per patch (row-major
    patch order, CLIP's ``conv1`` order; pixels past the last full patch are
    ignored, as CLIP ignores them)."""
    n, height, width = masks.shape
    gh, gw = height // patch, width // patch
    cropped = masks[:, :gh * patch, :gw * patch].reshape(n, gh, patch, gw, patch)
    return cropped.sum(dim=(2, 4)).reshape(n, gh * gw)


def image_metrics(saliency, kept, areas, patch, on_shape=ON_SHAPE):
    """Per-image metrics of the module docstring: saliency [N, P], kept
    (bool) [N, P], areas a [N, P] -> dict of float tensors [N]."""
    areas = areas.float()
    background = patch * patch - areas
    on = areas / (patch * patch) >= on_shape
    top = saliency.argmax(dim=1, keepdim=True)
    kept = kept.bool()
    union = (kept | on).sum(1).clamp_min(1)
    return {
        "pointing": on.gather(1, top).squeeze(1).float(),
        "shape_kept": (areas * kept).sum(1) / areas.sum(1).clamp_min(1e-12),
        "background_kept": (background * kept).sum(1) / background.sum(1).clamp_min(1e-12),
        "iou": (kept & on).sum(1).float() / union.float(),
    }


def summarise(per_image):
    """{metric: [N] values} -> {metric: (mean, 95 % half-width)}."""
    out = {}
    for key, values in per_image.items():
        values = values.double()
        sd = values.std().item() if values.numel() > 1 else 0.0
        out[key] = (values.mean().item(), 1.96 * sd / math.sqrt(max(values.numel(), 1)))
    return out
