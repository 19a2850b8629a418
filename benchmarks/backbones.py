"""Random-weight CLIP backbones for the benchmarks (no download).

A backbone is written once as a ``clip.model.CLIP`` state dict and given to
the trainers as ``MODEL.BACKBONE.NAME`` (the path form ``load_clip`` reads),
so the trainers load it exactly as they load OpenAI's files. Widths are
multiples of 64 (``clip.model.build_model`` infers heads as width // 64).
"""
import os

import torch
from clip.model import CLIP

from clipwb.errors import ConfigError, MissingFileError

_TEXT = dict(context_length=77, vocab_size=49408)

#: name -> clip.model.CLIP arguments
BACKBONES = {
    # the tests' tiny CLIP (tests/tiny_clip.py): 2 layers, 64 wide, 32 px
    "tiny": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64,
                 vision_patch_size=8, transformer_width=64, transformer_heads=1,
                 transformer_layers=2, **_TEXT),
    # the CPU default: ViT-B/16's depth (so prompt depth 9 means what it means
    # there) and sequence (112 px in 8 x 8 patches: 196 patches + CLS, so a few
    # prompt tokens are the same share of it), 128 wide
    "small": dict(embed_dim=128, image_resolution=112, vision_layers=12, vision_width=128,
                  vision_patch_size=8, transformer_width=128, transformer_heads=2,
                  transformer_layers=12, **_TEXT),
    # ViT-B/16's dimensions (OpenAI's), random weights: for GPU runs
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, transformer_width=512, transformer_heads=8,
                     transformer_layers=12, **_TEXT),
}


def describe_backbone(name):
    """One line naming the backbone and its size."""
    if name not in BACKBONES:
        return "{} (checkpoint file)".format(name)
    a = BACKBONES[name]
    return ("{} random weights (ViT: {} layers x {} wide, {} px, patch {}; text: {} layers x "
            "{} wide; embed {})".format(name, a["vision_layers"], a["vision_width"],
                                        a["image_resolution"], a["vision_patch_size"],
                                        a["transformer_layers"], a["transformer_width"],
                                        a["embed_dim"]))


def backbone_checkpoint(name, directory, seed=0):
    """Path of a CLIP checkpoint for ``name``: a named random backbone is
    written into ``directory``; any other value must be an existing file."""
    if name in BACKBONES:
        path = os.path.join(directory, "clip_{}.pt".format(name.replace("/", "-")))
        if not os.path.isfile(path):
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = CLIP(**BACKBONES[name]).float()
            torch.save(model.state_dict(), path)
        return path
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        return path
    if os.sep in name or name.endswith((".pt", ".pth", ".tar")):
        raise MissingFileError("--backbone {}: no such checkpoint file. Give an existing CLIP "
                               "checkpoint path or one of {}.".format(name, ", ".join(BACKBONES)))
    raise ConfigError("--backbone {!r} is not known: use one of {} or the path of a CLIP "
                      "checkpoint file.".format(name, ", ".join(BACKBONES)))
