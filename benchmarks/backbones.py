"""Random-weight CLIP backbones for the benchmarks and the full-size
config check (no download).

A backbone is written once as a ``clip.model.CLIP`` state dict and given to
the trainers as ``MODEL.BACKBONE.NAME`` (the path form ``load_clip`` reads),
so the trainers load it exactly as they load OpenAI's files. Widths are
multiples of 64 (``clip.model.build_model`` infers heads as width // 64).
The OpenAI entries have the dimensions of OpenAI's checkpoints of that name
(the shipped configs' backbones), with random weights; ViT-L/14 differs from
ViT-B in every width (text 768, vision 1024, embedding 768) and in the
depth of its image encoder (24 blocks against the text encoder's 12).
"""
import os

import torch
from clip.model import CLIP

from clipwb.errors import ConfigError, MissingFileError

_TEXT = dict(context_length=77, vocab_size=49408)
#: the text transformer of every OpenAI model named below
_OPENAI_TEXT = dict(transformer_width=512, transformer_heads=8, transformer_layers=12, **_TEXT)
#: the text transformer of ViT-L/14 (and ViT-L/14@336px): wider
_OPENAI_LARGE_TEXT = dict(transformer_width=768, transformer_heads=12, transformer_layers=12,
                          **_TEXT)
#: ViT-L/14's image encoder (its @336px variant differs only in resolution)
_VIT_L14 = dict(embed_dim=768, vision_layers=24, vision_width=1024, vision_patch_size=14,
                **_OPENAI_LARGE_TEXT)

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
    # OpenAI's dimensions, random weights: ViT-B/16 for GPU runs; all of them
    # for the full-size config check (tests/test_fullsize_configs.py)
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, **_OPENAI_TEXT),
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, **_OPENAI_TEXT),
    # ModifiedResNet: vision_layers are the blocks of its four stages
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3),
                 vision_width=64, vision_patch_size=None, **_OPENAI_TEXT),
    "RN101": dict(embed_dim=512, image_resolution=224, vision_layers=(3, 4, 23, 3),
                  vision_width=64, vision_patch_size=None, **_OPENAI_TEXT),
    "ViT-L/14": dict(image_resolution=224, **_VIT_L14),
    "ViT-L/14@336px": dict(image_resolution=336, **_VIT_L14),
}


def describe_backbone(name):
    """One line naming the backbone and its size."""
    if name not in BACKBONES:
        return "{} (checkpoint file)".format(name)
    a = BACKBONES[name]
    if isinstance(a["vision_layers"], (tuple, list)):
        vision = "ResNet: stages of {} blocks, {} wide stem, {} px".format(
            "-".join(str(n) for n in a["vision_layers"]), a["vision_width"],
            a["image_resolution"])
    else:
        vision = "ViT: {} layers x {} wide, {} px, patch {}".format(
            a["vision_layers"], a["vision_width"], a["image_resolution"],
            a["vision_patch_size"])
    return "{} random weights ({}; text: {} layers x {} wide; embed {})".format(
        name, vision, a["transformer_layers"], a["transformer_width"], a["embed_dim"])


def backbone_checkpoint(name, directory, seed=0, half=False):
    """Path of a CLIP checkpoint for ``name``: a named random backbone is
    written into ``directory`` (``half``: its floating-point tensors stored as
    float16, as OpenAI ships them: half the file); any other value must be an
    existing file."""
    if name in BACKBONES:
        path = os.path.join(directory, "clip_{}{}.pt".format(name.replace("/", "-"),
                                                            "_fp16" if half else ""))
        if not os.path.isfile(path):
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = CLIP(**BACKBONES[name]).float()
            state = model.state_dict()
            if half:
                state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
            partial = path + ".partial"
            torch.save(state, partial)
            os.replace(partial, path)  # never a half-written file under the final name
        return path
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        return path
    if os.sep in name or name.endswith((".pt", ".pth", ".tar")):
        raise MissingFileError("--backbone {}: no such checkpoint file. Give an existing CLIP "
                               "checkpoint path or one of {}.".format(name, ", ".join(BACKBONES)))
    raise ConfigError("--backbone {!r} is not known: use one of {} or the path of a CLIP "
                      "checkpoint file.".format(name, ", ".join(BACKBONES)))
