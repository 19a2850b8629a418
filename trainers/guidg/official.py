"""Step-2 choices of GuiDG's official code, offered as options of the
fine-tuning trainers (the ``*_official`` configs turn them on; the defaults
stay ours, see docs/METHODS.md).

- ``TRAIN_TRANSFORM randaugment``: the official step-2 train transform
  (``converter_dassl.py``): resize of the shorter side to ``INPUT.SIZE``
  (bicubic, whatever ``INPUT.INTERPOLATION`` says, as the official) + center
  crop + torchvision's ``RandAugment()`` + ``INPUT.PIXEL_MEAN / STD``.
  Default ``dassl``: ``INPUT.TRANSFORMS``.
- ``PREC fp16_master``: the image encoder's weights are half precision
  between steps; the forward runs under float16 autocast without a
  GradScaler; for the step the weights and gradients are made float32, the
  optimizer steps (its state is float32) and the weights go back to half
  precision (``engine.py``'s ``convert_models_to_fp32`` / ``convert_weights``).
  CUDA only; the CPU runs fp32 (one line says so) unless ``PREC_ON_CPU=1``.
"""
import contextlib
import os

import torch
import torchvision.transforms as T
from clip.model import convert_weights

from clipwb.trainers.kit.precision import PREC_ON_CPU_ENV, PRECISIONS

FP16_MASTER = "fp16_master"
#: PREC values of the fine-tuning trainers
FINETUNE_PRECISIONS = PRECISIONS + (FP16_MASTER,)
#: TRAIN_TRANSFORM values
TRAIN_TRANSFORMS = ("dassl", "randaugment")


def randaugment_transform(cfg):
    """The official step-2 train transform at ``INPUT.SIZE`` (see the module docstring)."""
    size = tuple(cfg.INPUT.SIZE)
    return T.Compose([
        T.Resize(max(size), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.RandAugment(),
        T.ToTensor(),
        T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD),
    ])


def resolve_fp16_master(device, key):
    """``fp16_master`` on CUDA (or with ``PREC_ON_CPU=1``), else ``fp32`` with a note."""
    device = torch.device(device)
    if device.type == "cuda" or os.environ.get(PREC_ON_CPU_ENV) == "1":
        print("{} = {}: half-precision weights, float32 optimizer step (the official "
              "code)".format(key, FP16_MASTER))
        return FP16_MASTER
    print("{} = {} runs as fp32 on the {} (half precision needs a CUDA GPU)".format(
        key, FP16_MASTER, device.type.upper()))
    return "fp32"


def weights_to_fp32(module):
    """Make every parameter of ``module`` (and its gradient) float32."""
    for param in module.parameters():
        param.data = param.data.float()
        if param.grad is not None:
            param.grad.data = param.grad.data.float()


def fp16_master_step(optimizer, module):
    """The optimizer step of ``fp16_master``: float32 for the step, then
    ``module``'s weights back to half precision (CLIP's ``convert_weights``)."""
    weights_to_fp32(module)
    optimizer.step()
    convert_weights(module)


@contextlib.contextmanager
def float32_while(module, active):
    """``module`` in float32 inside the block and half precision again after,
    when ``active``: loading an optimizer state casts it to each parameter's
    dtype, so it must meet the float32 weights it was saved with."""
    if not active:
        yield
        return
    weights_to_fp32(module)
    try:
        yield
    finally:
        convert_weights(module)
