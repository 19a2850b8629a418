"""ISP's sample probing and its loss (arXiv 2507.05677; spec items 4 and 5).

Confirmed by the paper's abstract and overview figure: a *sample probing*
module "dynamically adjusts loss coefficients based on sample difficulty",
the difficulty being "calculated by the prediction probability of frozen
CLIP". The exact formulas could not be read; the functions below implement
the project's default reconstruction, with the alternatives as arguments:

- difficulty (item 4): ``d_i = 1 - p(y_i | x_i)`` from the frozen zero-shot
  model on the training batch (``"frozen"``), the prompted model's detached
  prediction (``"prompted"``), or the product of both probabilities
  (``"product"``); or from the frozen model once per run, on each training
  image under the test transform (``"frozen_once"``: the trainer keeps the
  table, so a step needs no frozen image pass for the probe);
- coefficient: ``w_i = 1 + alpha * d_i`` normalised to mean 1 over the batch
  (``"linear"``), or ``w = B * softmax(d / T)`` (``"softmax"``);
- loss: ``L_CE = (1/B) sum_i w_i CE(z_i, y_i)``.

Under torchrun the batch is the global one: the trainer gathers every rank's
difficulties before :func:`probe_weights` and weights its own slice.

The stability terms (item 5) reuse PromptSRC's L_SCL functions
(``promptsrc_losses``, PromptSRC Eqs. 2-3) with a weight each.
"""
import torch
import torch.nn.functional as F

#: difficulty sources computed from the batch (sample_difficulty)
BATCH_PROBE_SOURCES = ("frozen", "prompted", "product")
PROBE_SOURCES = BATCH_PROBE_SOURCES + ("frozen_once",)
PROBE_WEIGHTINGS = ("linear", "softmax")


@torch.no_grad()
def true_class_probability(logits, labels):
    """``p(y_i | x_i)`` [B] = softmax(logits)[i, y_i], without gradient."""
    probs = F.softmax(logits.detach().float(), dim=-1)
    return probs.gather(1, labels.view(-1, 1)).squeeze(1)


@torch.no_grad()
def sample_difficulty(labels, frozen_logits=None, prompted_logits=None, source="frozen"):
    """Difficulty ``d_i`` in [0, 1] of each sample (spec item 4).

    ``frozen``: ``1 - p_frozen(y_i|x_i)``; ``prompted``: ``1 - p_prompted``
    (detached); ``product``: ``1 - p_frozen * p_prompted``. Never carries a
    gradient.
    """
    if source not in BATCH_PROBE_SOURCES:
        raise ValueError("source must be one of {}, got {!r}".format(BATCH_PROBE_SOURCES,
                                                                      source))
    prob = 1.0
    if source in ("frozen", "product"):
        prob = prob * true_class_probability(frozen_logits, labels)
    if source in ("prompted", "product"):
        prob = prob * true_class_probability(prompted_logits, labels)
    return 1.0 - prob


@torch.no_grad()
def probe_weights(difficulty, weighting="linear", alpha=1.0, temperature=1.0):
    """Per-sample loss coefficients with mean 1 over the batch (spec item 4).

    ``linear``: ``w_i = (1 + alpha d_i) / mean_j (1 + alpha d_j)``;
    ``softmax``: ``w = B * softmax(d / temperature)`` (``alpha`` unused).
    Harder samples (larger ``d``) get larger weights; equal difficulties give
    all ones.
    """
    difficulty = difficulty.float()
    if weighting == "linear":
        raw = 1.0 + alpha * difficulty
        return raw / raw.mean()
    if weighting == "softmax":
        return difficulty.numel() * F.softmax(difficulty / temperature, dim=0)
    raise ValueError("weighting must be one of {}, got {!r}".format(PROBE_WEIGHTINGS, weighting))


def weighted_cross_entropy(logits, labels, weights=None):
    """Probed cross-entropy ``(1/B) sum_i w_i CE(z_i, y_i)``; plain CE when
    ``weights`` is None."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    if weights is None:
        return per_sample.mean()
    return (weights.to(per_sample.dtype).detach() * per_sample).mean()
