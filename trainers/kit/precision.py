"""Precision modes of ``TRAINER.<NAME>.PREC`` (CoOp semantics, plus bf16).

- ``fp16``: the frozen CLIP weights in half precision (CUDA only), and the
  official CoOp-family arithmetic: the parameters the official code creates
  in CLIP's dtype (the text context; CoCoOp's meta-net; MaPLe's ``proj``) are
  float16 parameters updated in place by the optimizer (no float32 master
  copy, no loss scaling), the others float32; features, logits and losses
  stay float16 as in the official code;
- ``fp32``: everything in float32, with the official forks' rounding: MaPLe,
  IVLP and PromptSRC (and the methods built on them) round their deep text
  prompts and their vision prompts to float16 on the way into the encoders
  (``.half()`` in the forks' blocks), whatever the run's precision;
- ``amp``: float32 weights, ``torch.autocast`` float16 and a ``GradScaler``;
- ``bf16``: float32 weights, ``torch.autocast`` bfloat16 (GPUs that support it).

Ours, cleaner than the official arithmetic (prompt trainers only):

- ``fp16_master``: float16 frozen CLIP as ``fp16``, every learnable tensor a
  float32 master (cast to float16 for the encoders), features and losses in
  float32;
- ``fp32_exact``: ``fp32`` without the float16 rounding of prompts.

Off CUDA every half-precision mode runs as fp32 (one log line says so;
``fp16_master`` as ``fp32_exact``), unless the environment sets
``PREC_ON_CPU=1``: then the modes run on the CPU as asked (fp16 weights, CPU
autocast, a CPU ``GradScaler``). That is slow and meant for checking a
trainer's half-precision code paths without a GPU (the tests do).
"""
import contextlib
import os

import torch
from clip.model import convert_weights

from clipwb.errors import ConfigError

PRECISIONS = ("fp16", "fp32", "amp", "bf16")
#: the prompt trainers' modes: the official ones and ours (module docstring)
PROMPT_PRECISIONS = PRECISIONS + ("fp16_master", "fp32_exact")
#: modes whose frozen CLIP weights are float16
HALF_WEIGHTS = ("fp16", "fp16_master")
#: environment switch: keep the PREC modes on the CPU (see the module docstring)
PREC_ON_CPU_ENV = "PREC_ON_CPU"


def check_precision(value, key, modes=PRECISIONS):
    """Raise ConfigError unless ``value`` is one of ``modes``."""
    if value not in modes:
        raise ConfigError("{} = {!r} is not a precision mode: use one of {}.".format(
            key, value, ", ".join(modes)))
    return value


def resolve_precision(value, device, key, modes=PRECISIONS):
    """The mode actually used on ``device`` (fp32 off CUDA, unless
    ``PREC_ON_CPU=1`` keeps it on the CPU; ``fp16_master`` falls back to
    ``fp32_exact``)."""
    check_precision(value, key, modes)
    if value == "fp32_exact":
        return value
    device = torch.device(device)
    if device.type == "cpu" and os.environ.get(PREC_ON_CPU_ENV) == "1":
        if value != "fp32":
            print("{} = {} on the CPU ({}=1: slow, for checking half-precision code "
                  "paths)".format(key, value, PREC_ON_CPU_ENV))
        return value
    if device.type != "cuda":
        fallback = "fp32_exact" if value == "fp16_master" else "fp32"
        if value != "fp32":
            print("{} = {} runs as {} on the {} (half precision needs a CUDA GPU)".format(
                key, value, fallback, device.type.upper()))
        return fallback
    if value == "bf16" and not torch.cuda.is_bf16_supported():
        print("{} = bf16 is not supported by this GPU; using amp (float16 autocast)".format(key))
        return "amp"
    return value


def apply_weight_precision(clip_model, precision):
    """Convert the frozen CLIP weights to half precision for ``fp16`` and
    ``fp16_master``."""
    if precision in HALF_WEIGHTS:
        convert_weights(clip_model)
    return clip_model


def learnable_dtype(precision):
    """dtype of the parameters the official code creates in CLIP's dtype
    (float16 under the resolved ``fp16``; float32 otherwise)."""
    return torch.float16 if precision == "fp16" else torch.float32


def rounds_prompts(precision):
    """Whether prompts go into the encoders rounded to float16 in a float32
    run, as the official forks round them (``fp32``; not ``fp32_exact``)."""
    return precision == "fp32"


def keeps_half_features(precision):
    """Whether features, logits and losses stay in the encoders' float16
    (the official ``fp16``) instead of float32 (``fp16_master``)."""
    return precision == "fp16"


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
