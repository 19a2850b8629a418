"""The FLOP bound of evaluation images/s: the multiply-adds of one image
through CLIP's image encoder, and the dense matmul rate the device reaches.

ViT-B/16 at 224 px: 196 patches + CLS = 197 tokens of width 768, 12 blocks,
17.56 G multiply-adds per image, the "17.6 GFLOPs" usually quoted for it
(which count a multiply-add once); a GPU's FLOP/s count it twice, so the
bound is ``peak FLOP/s / (2 x 17.56 G)`` images/s.
"""
import time

import torch

#: FLOPs of one multiply-add (how device peaks are counted)
FLOPS_PER_MAC = 2
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def vit_image_macs(visual):
    """Multiply-adds of one image through a CLIP ``VisionTransformer``, or
    None for another image encoder (``ModifiedResNet``).

    Counted as in ``clip/model.py``: the patch embedding (a ``conv1`` of
    ``3 p^2`` inputs per patch and output channel), per block and token the
    attention projections (``4 w^2``: q, k, v and out) and the MLP (``8 w^2``:
    ``w -> 4w -> w``), per block the attention products (``2 t^2 w``: QK^T and
    AV), and the output projection of the CLS token (``w x embed``). Layer
    norms, softmax and GELU (a few per cent) are left out.
    """
    conv = getattr(visual, "conv1", None)
    transformer = getattr(visual, "transformer", None)
    if conv is None or transformer is None or getattr(visual, "proj", None) is None:
        return None
    width, _, patch, _ = conv.weight.shape
    patches = (int(visual.input_resolution) // patch) ** 2
    tokens = patches + 1
    per_block = tokens * 12 * width * width + 2 * tokens * tokens * width
    return (patches * 3 * patch * patch * width + transformer.layers * per_block
            + width * visual.proj.shape[1])


def matmul_flops_per_s(device, dtype, n=None, repeats=10):
    """FLOP/s of an ``n x n`` by ``n x n`` matmul in ``dtype`` on ``device``
    (the fastest of ``repeats`` calls after two warm-up calls): the dense
    peak the evaluation is measured against (8192 on CUDA, 1024 on the CPU)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 1024)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    best = float("inf")
    for i in range(repeats + 2):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        if cuda:
            torch.cuda.synchronize(device)
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


def peak_dtypes(device):
    """The dtypes whose matmul peak a device's evaluation is compared with:
    fp16 and bf16 (where supported) on CUDA, fp32 on the CPU (which runs
    every PREC as fp32)."""
    if torch.device(device).type != "cuda":
        return ["fp32"]
    return ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]


def peak_dtype_of(precision, device):
    """The matmul dtype an evaluation in ``precision`` runs its products in."""
    if torch.device(device).type != "cuda":
        return "fp32"
    return {"fp16": "fp16", "amp": "fp16", "bf16": "bf16"}.get(precision, "fp32")
