"""Precision modes of ``TRAINER.<NAME>.PREC`` (CoOp semantics, plus bf16).

- ``fp16``: the frozen CLIP weights in half precision (CUDA only);
- ``fp32``: everything in float32;
- ``amp``: float32 weights, ``torch.autocast`` float16 and a ``GradScaler``;
- ``bf16``: float32 weights, ``torch.autocast`` bfloat16 (GPUs that support it).

Off CUDA every mode runs as fp32 (one log line says so), unless the
environment sets ``PREC_ON_CPU=1``: then the modes run on the CPU as asked
(fp16 weights, CPU autocast, a CPU ``GradScaler``). That is slow and meant for
checking a trainer's half-precision code paths without a GPU (the tests do).
Learnable parameters are always float32 (master weights); the encoders cast
them to CLIP's dtype.
"""
import contextlib
import os

import torch
from clip.model import convert_weights

from clipwb.errors import ConfigError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")
#: environment switch: keep the PREC modes on the CPU (see the module docstring)
PREC_ON_CPU_ENV = "PREC_ON_CPU"


def check_precision(value, key):
    """Raise ConfigError unless ``value`` is a known precision mode."""
    if value not in PRECISIONS:
        raise ConfigError("{} = {!r} is not a precision mode: use one of {}.".format(
            key, value, ", ".join(PRECISIONS)))
    return value


def resolve_precision(value, device, key):
    """The mode actually used on ``device`` (fp32 off CUDA, unless
    ``PREC_ON_CPU=1`` keeps it on the CPU)."""
    check_precision(value, key)
    device = torch.device(device)
    if device.type == "cpu" and os.environ.get(PREC_ON_CPU_ENV) == "1":
        if value != "fp32":
            print("{} = {} on the CPU ({}=1: slow, for checking half-precision code "
                  "paths)".format(key, value, PREC_ON_CPU_ENV))
        return value
    if device.type != "cuda":
        if value != "fp32":
            print("{} = {} runs as fp32 on the {} (half precision needs a CUDA GPU)".format(
                key, value, device.type.upper()))
        return "fp32"
    if value == "bf16" and not torch.cuda.is_bf16_supported():
        print("{} = bf16 is not supported by this GPU; using amp (float16 autocast)".format(key))
        return "amp"
    return value


def apply_weight_precision(clip_model, precision):
    """Convert the frozen CLIP weights to half precision for ``fp16``."""
    if precision == "fp16":
        convert_weights(clip_model)
    return clip_model


def autocast_context(precision, device):
    """``torch.autocast`` on ``device`` for a resolved amp (float16) or bf16
    mode (:func:`resolve_precision`); a no-op for fp32 and fp16."""
    device = torch.device(device)
    if precision in ("amp", "bf16"):
        dtype = torch.float16 if precision == "amp" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def make_grad_scaler(precision, device="cuda"):
    """A ``GradScaler`` on ``device`` for a resolved amp mode, else None."""
    if precision == "amp":
        return torch.amp.GradScaler(torch.device(device).type)
    return None
