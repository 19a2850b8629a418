"""Weight averaging of the fine-tuned image encoder: CLIPood's Beta moving
average and WiSE-FT.

- BMA (Shu et al., CLIPood, ICML 2023, Sec. 3.3; GuiDG appendix): the average
  starts at the pretrained weights ``theta_0`` with weight ``a_0``; after step
  t (1..T), ``theta_bma = (sum_{k<t} a_k * theta_bma + a_t * theta_t) / sum_{k<=t} a_k``
  with ``a_t = Beta(beta, beta).pdf((t + 0.5) / (T + 1))``, so after T steps
  ``theta_bma = sum_{t=0..T} a_t theta_t / sum_{t=0..T} a_t`` (GuiDG's
  ``engine.GeneralMovingAverage``: ``weight_sum = a_0`` at the copy, update t
  weighted ``a_t``). Ours updates the average as
  ``theta_bma * S_{t-1} / S_t + theta_t * a_t / S_t`` (``S_t = sum_{k<=t} a_k``).
  An average holding float16 weights (``PREC fp16_master``: the official
  code's half-precision encoder, its layer norms and embeddings float32) is
  updated as the official code writes it, ``(theta_bma + r * theta_t) / (1 + r)``
  with ``r = a_t / S_{t-1}``, every tensor: the same algebra, but each float16
  operation rounds, so only the official order gives the official average.
- WiSE-FT (Wortsman et al., CVPR 2022, Eq. 1; GuiDG appendix Eq. 24):
  ``theta = (1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned``.
"""
import copy

import torch
from scipy.stats import beta as beta_dist
from torch import nn


def bma_weight(step, total_steps, beta):
    """``Beta(beta, beta).pdf((step + 0.5) / (total_steps + 1))``."""
    return float(beta_dist.pdf((step + 0.5) / (total_steps + 1), beta, beta))


def holds_half_precision(state):
    """Whether a state dict holds a float16 tensor (an encoder after CLIP's
    ``convert_weights``: ``PREC fp16_master``)."""
    return any(value.dtype == torch.float16 for value in state.values())


def official_bma_step(avg, cur, relative_weight):
    """``(avg + r * cur) / (1 + r)`` as three tensor operations, each rounded
    in ``avg``'s dtype, ``r = relative_weight`` a Python float (GuiDG
    ``engine.py``, ``GeneralMovingAverage.update``)."""
    return (avg + relative_weight * cur.to(avg.dtype)) / (1 + relative_weight)


class AveragedEncoder(nn.Module):
    """A frozen copy of an encoder that holds an average of its weights.

    The copy is made of the encoder as it is built (the pretrained
    ``theta_0``); ``weight_sum`` and ``num_updates`` are buffers, so a
    checkpoint resumes the running average exactly. The copy is ``self.encoder``: Dassl's
    ``save_checkpoint`` strips a leading ``module.`` from every key (meant for
    ``nn.DataParallel``), so that name would not load back; checkpoints saved
    with it (keys without a prefix) still load.
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = copy.deepcopy(encoder)
        for param in self.encoder.parameters():
            param.requires_grad_(False)
        self.register_buffer("weight_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Also load keys without the ``encoder.`` prefix (older checkpoints)."""
        own = ("weight_sum", "num_updates")
        fixed = {}
        for key, value in state_dict.items():
            if key not in own and not key.startswith("encoder."):
                key = "encoder." + (key[len("module."):] if key.startswith("module.") else key)
            fixed[key] = value
        return super().load_state_dict(fixed, strict=strict, assign=assign)

    @torch.no_grad()
    def bma_update(self, encoder, total_steps, beta):
        """Fold ``encoder``'s current weights (theta_t, t = ``num_updates + 1``)
        into the Beta moving average with weight ``a_t``; before the first
        update the copy is theta_0 and counts with weight ``a_0``."""
        if int(self.num_updates) == 0:
            self.weight_sum.fill_(bma_weight(0, total_steps, beta))
        step = int(self.num_updates) + 1
        alpha = bma_weight(step, total_steps, beta)
        old_sum = float(self.weight_sum)
        new_sum = old_sum + alpha
        state = self.encoder.state_dict()
        official = holds_half_precision(state)
        for avg, cur in zip(state.values(), encoder.state_dict().values()):
            if not avg.dtype.is_floating_point:
                avg.copy_(cur)
            elif official:
                avg.copy_(official_bma_step(avg, cur, alpha / old_sum))
            else:
                avg.mul_(old_sum / new_sum).add_(cur.to(avg.dtype), alpha=alpha / new_sum)
        self.weight_sum.fill_(new_sum)
        self.num_updates += 1

    @torch.no_grad()
    def wise_ft(self, zero_shot_state, encoder, alpha):
        """Set the weights to WiSE-FT's mix of ``zero_shot_state`` and ``encoder``."""
        mixed = interpolate_state_dicts(zero_shot_state, encoder.state_dict(), alpha)
        self.encoder.load_state_dict(mixed)
        self.num_updates += 1


def interpolate_state_dicts(zero_shot, fine_tuned, alpha):
    """``(1 - alpha) * zero_shot + alpha * fine_tuned`` for every floating
    tensor (others are taken from ``fine_tuned``); the two must share keys."""
    if set(zero_shot) != set(fine_tuned):
        raise ValueError("WiSE-FT needs two state dicts with the same keys")
    out = {}
    for key, tuned in fine_tuned.items():
        base = zero_shot[key].to(tuned.device)
        if tuned.dtype.is_floating_point:
            out[key] = (1.0 - alpha) * base.to(tuned.dtype) + alpha * tuned
        else:
            out[key] = tuned.clone()
    return out
