"""Losses of the DG fine-tuning baselines and of GuiDG's expert-weighted objective.

- :func:`mms_logits`: CLIPood's margin metric softmax (Shu et al., "CLIPood:
  Generalizing CLIP to Out-of-Distributions", ICML 2023, Sec. 3.2; GuiDG
  appendix Eq. 23): ``z_c = tau * (f . t_c - lambda * t_y . t_c)``, i.e. the
  image feature shifted by ``-lambda * t_y``. Up to the per-sample constant
  ``tau * lambda`` this is ``tau * [S(I, T_c) + lambda * (1 - S(T_y, T_c))]``.
- :func:`ueo_regularizer`: the entropy term of UEO (Liang et al., 2024) as
  GuiDG's code adds it: ``mean_b H(p_b) - H(mean_b p_b)`` (under torchrun
  ``mean_b p_b`` is the global batch's, reduced over the ranks).
- :func:`expert_weighted_loss`: GuiDG's Eq. 20 as the code computes it:
  ``sum_i w_i * mean_b CE_i(x_b)`` with batch-mean weights ``w`` [d], or
  ``mean_b sum_i w_i(x_b) * CE_i(x_b)`` with per-sample weights [B, d].
"""
import torch
import torch.nn.functional as F


def mms_logits(image_features, text_features, labels, scale, margin):
    """Margin-metric-softmax logits [B, C] for unit-norm ``image_features``
    [B, D] and class ``text_features`` [C, D]; ``margin = 0`` gives plain CLIP
    logits ``scale * f @ T^T``."""
    text_features = text_features.to(image_features.dtype)
    if margin:
        image_features = image_features - margin * text_features[labels]
    return scale * image_features @ text_features.t()


def entropy(probs, dim=-1, eps=1e-12):
    """Shannon entropy (nats) along ``dim``."""
    return -(probs * torch.log(probs.clamp_min(eps))).sum(dim)


def ueo_regularizer(logits, batch_mean=None):
    """``mean_b H(softmax(z_b)) - H(mean_b softmax(z_b))`` of logits [B, C]
    (low when each prediction is confident and the batch's are diverse).

    ``batch_mean`` maps the mean prediction of ``logits`` (a slice of the
    global batch, under torchrun) to the global batch's (e.g.
    :func:`clipwb.engine.distributed.mean_over_ranks`); the first term is a
    per-image mean and needs nothing.
    """
    probs = F.softmax(logits.float(), dim=-1)
    mean_probs = probs.mean(0)
    if batch_mean is not None:
        mean_probs = batch_mean(mean_probs)
    return entropy(probs).mean() - entropy(mean_probs)


def per_expert_cross_entropy(logits, labels):
    """Cross-entropy [B, d] of expert logits [B, d, C] against labels [B]."""
    batch, n_expert, n_cls = logits.shape
    flat = F.cross_entropy(logits.reshape(batch * n_expert, n_cls).float(),
                           labels.repeat_interleave(n_expert), reduction="none")
    return flat.reshape(batch, n_expert)


def expert_weighted_loss(ce, weights):
    """Expert-weighted loss from per-sample, per-expert CE [B, d].

    ``weights`` [d] (batch mean, GuiDG's code) gives ``sum_i w_i mean_b ce_bi``;
    ``weights`` [B, d] (per sample, the paper's w(x)) gives
    ``mean_b sum_i w_bi ce_bi``.
    """
    if weights.dim() == 1:
        return (weights * ce.mean(0)).sum()
    return (weights * ce).sum(1).mean()
