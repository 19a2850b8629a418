"""Running averages of scalars (Dassl's ``AverageMeter`` / ``MetricMeter``)."""
from collections import defaultdict

import torch

__all__ = ["AverageMeter", "MetricMeter"]


def _as_float(value):
    return value.item() if isinstance(value, torch.Tensor) else value


class AverageMeter:
    """Last value (``val``), running ``sum``, ``count`` and average ``avg``.

    With ``ema=True`` the average is an exponential moving average
    (``avg = 0.9 * avg + 0.1 * val``).
    """

    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        val = _as_float(val)
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = 0.9 * self.avg + 0.1 * val
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A named set of AverageMeters; ``str()`` gives ``name val (avg)`` items."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for name, value in input_dict.items():
            self.meters[name].update(_as_float(value))

    def __str__(self):
        return self.delimiter.join(
            "{} {:.4f} ({:.4f})".format(name, m.val, m.avg)
            for name, m in self.meters.items())
