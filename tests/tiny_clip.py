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


#: a tiny CLIP shaped like ViT-L/14 against ViT-B/16: every width differs
#: from the others, from the tiny one and from ViT-B's 512 and 768, also as 3
#: and 4 times a width (attention and MLP weights): text 320, image 384,
#: joint embedding 96; and the image encoder is deeper than the text encoder
#: (3 blocks against 2), so a width or depth read from the wrong tower fails
WIDE_CLIP_KWARGS = dict(TINY_CLIP_KWARGS, embed_dim=96, vision_layers=3, vision_width=384,
                        transformer_width=320, transformer_heads=5)


def build_tiny_clip(seed=0, kwargs=None):
    """Return a float32 tiny CLIP (``kwargs``: ``clip.model.CLIP``'s arguments,
    default :data:`TINY_CLIP_KWARGS`) with deterministic random weights."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = CLIP(**(kwargs or TINY_CLIP_KWARGS))
    return model.float().eval()


def write_tiny_clip(path, seed=0, kwargs=None):
    """Save a tiny CLIP ``state_dict`` to ``path`` and return the path."""
    torch.save(build_tiny_clip(seed, kwargs).state_dict(), str(path))
    return str(path)
