"""Precision modes of ``TRAINER.<NAME>.PREC`` (CoOp semantics, plus bf16).

- ``fp16``: the frozen CLIP weights in half precision (CUDA only);
- ``fp32``: everything in float32;
- ``amp``: float32 weights, ``torch.autocast`` float16 and a ``GradScaler``;
- ``bf16``: float32 weights, ``torch.autocast`` bfloat16 (GPUs that support it).

Off CUDA every mode runs as fp32 (one log line says so). Learnable parameters
are always float32 (master weights); the encoders cast them to CLIP's dtype.
"""
import contextlib

import torch
from clip.model import convert_weights

from engine.errors import ConfigError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def check_precision(value, key):
    """Raise ConfigError unless ``value`` is a known precision mode."""
    if value not in PRECISIONS:
        raise ConfigError("{} = {!r} is not a precision mode: use one of {}.".format(
            key, value, ", ".join(PRECISIONS)))
    return value


def resolve_precision(value, device, key):
    """The mode actually used on ``device`` (fp32 off CUDA)."""
    check_precision(value, key)
    device = torch.device(device)
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
    """``torch.autocast`` for amp / bf16 on CUDA; a no-op otherwise."""
    device = torch.device(device)
    if device.type == "cuda" and precision in ("amp", "bf16"):
        dtype = torch.float16 if precision == "amp" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def make_grad_scaler(precision):
    """A ``GradScaler`` for amp, else None."""
    if precision == "amp":
        return torch.amp.GradScaler("cuda")
    return None
