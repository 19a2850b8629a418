"""A tiny ``clip.model.CLIP`` for offline tests.

Same architecture family and state-dict keys as OpenAI's ViT checkpoints, so it
goes through the loader users use (``MODEL.BACKBONE.NAME=/path/to/file.pt``).
Widths are multiples of 64 because ``clip.model.build_model`` infers the number
of heads as width // 64.
"""
import torch
from clip.model import CLIP

TINY_CLIP_KWARGS = dict(
    embed_dim=64,
    image_resolution=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=8,
    context_length=77,
    vocab_size=49408,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=2,
)


def build_tiny_clip(seed=0):
    """Return a float32 tiny CLIP with deterministic random weights."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = CLIP(**TINY_CLIP_KWARGS)
    return model.float().eval()


def write_tiny_clip(path, seed=0):
    """Save a tiny CLIP ``state_dict`` to ``path`` and return the path."""
    torch.save(build_tiny_clip(seed).state_dict(), str(path))
    return str(path)
