"""PromptSRC's self-regulating constraints and Gaussian prompt aggregation.

Khattak et al., "Self-regulating Prompts: Foundational Model Adaptation
without Forgetting", ICCV 2023 (arXiv 2307.06948). Sec. 3.2.1 (mutual
agreement maximization) defines L_SCL = lambda1 L_SCL-image + lambda2
L_SCL-text + L_SCL-logits (Eqs. 2-4), added to cross-entropy (Eq. 5);
Sec. 3.2.2 aggregates the prompts of every epoch with Gaussian weights
(Eq. 6). Reductions follow the reference code: L1 losses are means over all
elements, the KL term is a sum divided by the number of logits.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipwb.errors import ConfigError


def scl_text_loss(text_features, frozen_text_features, weight=1.0):
    """L_SCL-text (Eq. 2): weight * mean |g_p - g|, between the unit-norm
    prompted and frozen class text features [n_cls, D] (mixed dtypes are
    promoted, as in the reference code's float16 runs)."""
    return F.l1_loss(text_features, frozen_text_features) * weight


def scl_image_loss(image_features, frozen_image_features, weight=1.0):
    """L_SCL-image (Eq. 2): weight * mean |f_p - f|, between the unit-norm
    prompted and frozen image features [B, D]."""
    return F.l1_loss(image_features, frozen_image_features) * weight


def scl_logits_loss(logits, frozen_logits):
    """L_SCL-logits (Eq. 3): KL(softmax(frozen) || softmax(prompted)), summed
    over the batch and classes and divided by ``logits.numel()``."""
    return F.kl_div(
        F.log_softmax(logits, dim=1),
        F.log_softmax(frozen_logits.to(logits.dtype), dim=1),
        reduction="sum",
        log_target=True,
    ) / logits.numel()


@dataclass
class SCLTerms:
    """The three terms of L_SCL (Eq. 4) and their sum."""

    text: torch.Tensor
    image: torch.Tensor
    logits: torch.Tensor

    @property
    def total(self):
        """The sum in the reference code's order (logits + text + image)."""
        return self.logits + self.text + self.image


def scl_losses(output, frozen_image_features, frozen_text_features, frozen_logits,
               text_weight, image_weight):
    """L_SCL (Eq. 4) for a prompted ``CLIPOutput`` against frozen CLIP."""
    return SCLTerms(
        text=scl_text_loss(output.text_features, frozen_text_features, text_weight),
        image=scl_image_loss(output.image_features, frozen_image_features, image_weight),
        logits=scl_logits_loss(output.logits, frozen_logits),
    )


def gpa_weights(max_epoch, mean, std, key="TRAINER.PROMPTSRC"):
    """Per-epoch GPA weights (Sec. 3.2.2, Eq. 6): w_e proportional to the
    Gaussian density N(e; mean, std^2) for e = 1..max_epoch, normalised to sum
    to one (computed in log space, so far-off means do not underflow)."""
    if std <= 0:
        raise ConfigError("{}.GPA_STD = {} must be > 0.".format(key, std))
    if max_epoch < 1:
        raise ConfigError("OPTIM.MAX_EPOCH = {} must be >= 1.".format(max_epoch))
    logs = [-0.5 * ((e - mean) / std) ** 2 for e in range(1, max_epoch + 1)]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return [w / total for w in weights]


class GaussianPromptAggregation:
    """Gaussian prompt aggregation (PromptSRC Sec. 3.2.2, Eq. 6):
    P = sum_e w_e P_e over the epochs' learnable parameters.

    Call :meth:`update` after each epoch and :meth:`apply` after the last to
    replace the parameters by the aggregate. Only parameters with
    ``requires_grad`` are aggregated (frozen tensors are constant anyway).
    When training resumed part-way, the aggregate of the epochs seen is
    divided by the sum of their weights, so it stays a weighted mean.
    """

    def __init__(self, max_epoch, mean, std, key="TRAINER.PROMPTSRC"):
        self.weights = gpa_weights(max_epoch, mean, std, key)
        self.state = None
        self.total_weight = 0.0

    @torch.no_grad()
    def update(self, module, epoch):
        """Add ``w_epoch * params`` (``epoch`` 0-based) to the aggregate."""
        weight = self.weights[epoch]
        self.total_weight += weight
        params = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
        # in each parameter's dtype, as the reference code sums the state dicts
        if self.state is None:
            self.state = {n: p * weight for n, p in params.items()}
        else:
            for name, param in params.items():
                self.state[name] = self.state[name] + param * weight

    @torch.no_grad()
    def apply(self, module):
        """Load the aggregate into ``module`` (no-op before any update, or
        when every epoch seen had a zero weight)."""
        if self.state is None or self.total_weight <= 0:
            return
        params = dict(module.named_parameters())
        for name, value in self.state.items():
            params[name].copy_((value / self.total_weight).to(params[name].dtype))
