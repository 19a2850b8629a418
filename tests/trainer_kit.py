"""Shared helpers for the CLIP prompt-trainer tests on the tiny CLIP
(``tests/tiny_clip.py``): a tiny two-class image dataset, a Dassl-style config
with the settings every such test uses, and running a repository script.

Each test module keeps its own differences (trainer keys, batch sizes, epochs)
as explicit arguments or opts of :func:`make_cfg`.
"""
import os
import subprocess

import torch
from PIL import Image

import clipwb.trainers
from clipwb.engine import DATASET_REGISTRY, DatasetBase, Datum, get_cfg_default
from clipwb.trainers.kit.clip_loader import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- the tiny two-class dataset ------------------------------------------------------------
DATASET = "TinyTwoClass"
CLASSNAMES = ["red_square", "blue_circle"]
COLORS = [(220, 40, 40), (40, 40, 220)]
N_PER_CLASS = 4
IMAGE_SIZE = 32


def image_path(root, classname, i):
    return os.path.join(root, "{}_{}.png".format(classname, i))


class TinyTwoClass(DatasetBase):
    """4 reddish and 4 bluish 32 px images under DATASET.ROOT (written by
    :func:`write_two_class_images`); the validation split is every other one."""

    def __init__(self, cfg):
        root = cfg.DATASET.ROOT
        items = [Datum(impath=image_path(root, name, i), label=label, classname=name)
                 for label, name in enumerate(CLASSNAMES) for i in range(N_PER_CLASS)]
        super().__init__(train_x=items, val=items[::2], test=items)


def register_tiny_two_class():
    """Register :class:`TinyTwoClass` as ``DATASET`` (idempotent)."""
    if DATASET not in DATASET_REGISTRY.registered_names():
        DATASET_REGISTRY.register(TinyTwoClass)


register_tiny_two_class()


def write_two_class_images(root):
    """Write the dataset's images (class colour plus seeded noise) into the
    existing folder ``root``; return ``str(root)`` for DATASET.ROOT."""
    gen = torch.Generator().manual_seed(0)
    for name, color in zip(CLASSNAMES, COLORS):
        for i in range(N_PER_CLASS):
            noise = torch.randint(-25, 25, (IMAGE_SIZE, IMAGE_SIZE, 3), generator=gen)
            pixels = (torch.tensor(color).view(1, 1, 3) + noise).clamp(0, 255).byte()
            Image.fromarray(pixels.numpy()).save(image_path(str(root), name, i))
    return str(root)


# -- the config ----------------------------------------------------------------------------
# make_cfg's keyword overrides: name -> (config key, default). None as a value
# leaves the engine's default in place.
COMMON_SETTINGS = {
    "train_batch_size": ("DATALOADER.TRAIN_X.BATCH_SIZE", 4),
    "test_batch_size": ("DATALOADER.TEST.BATCH_SIZE", 4),
    "lr": ("OPTIM.LR", 2e-4),  # the tiny random CLIP is steep: small steps decrease the loss
    "max_epoch": ("OPTIM.MAX_EPOCH", 2),
    "print_freq": ("TRAIN.PRINT_FREQ", 1),
}


def make_cfg(trainer_name, clip_path, data_root, output_dir, opts=(), **overrides):
    """A frozen config for ``trainer_name`` on the tiny CLIP at ``clip_path``
    and the tiny dataset at ``data_root``: 32 px input, normalize only, CLIP's
    mean and std, no workers, SGD, plus the :data:`COMMON_SETTINGS` (changed by
    ``overrides``), then ``opts`` (a flat key/value list) merged last."""
    unknown = sorted(set(overrides) - set(COMMON_SETTINGS))
    if unknown:
        raise TypeError("make_cfg: unknown override(s) {}".format(unknown))
    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    cfg.TRAINER.NAME = trainer_name
    cfg.DATASET.NAME = DATASET
    cfg.DATASET.ROOT = data_root
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.BACKBONE.NAME = clip_path
    cfg.INPUT.SIZE = (IMAGE_SIZE, IMAGE_SIZE)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.INPUT.PIXEL_MEAN = list(CLIP_PIXEL_MEAN)
    cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_STD)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OPTIM.NAME = "sgd"
    for name, (key, default) in COMMON_SETTINGS.items():
        value = overrides.get(name, default)
        if value is not None:
            *path, leaf = key.split(".")
            node = cfg
            for part in path:
                node = getattr(node, part)
            setattr(node, leaf, value)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


# -- scripts -------------------------------------------------------------------------------
def run_script(env, *args, **extra_env):
    """Run ``args`` (made strings) from the repository root with ``env`` plus
    ``extra_env`` (values made strings); return the CompletedProcess with its
    output captured as text."""
    e = dict(env, **{k: str(v) for k, v in extra_env.items()})
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=e,
                          cwd=REPO, timeout=300)


def tiny_script_yaml(trainer_node, trainer_keys, transforms=("normalize",), lr=0.01):
    """A trainer YAML for the script tests on the tiny CLIP (32 px, batch 4,
    2 epochs, a checkpoint each epoch); ``trainer_keys`` the
    ``TRAINER.<trainer_node>`` entries as a dict."""
    keys = "".join("    {}: {}\n".format(k, v) for k, v in trainer_keys.items())
    return """\
DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 8
  NUM_WORKERS: 0
INPUT:
  SIZE: (32, 32)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: [{transforms}]
OPTIM:
  NAME: "sgd"
  LR: {lr}
  MAX_EPOCH: 2
  LR_SCHEDULER: "cosine"
TRAIN:
  PRINT_FREQ: 1
  CHECKPOINT_FREQ: 1
TRAINER:
  {node}:
{keys}""".format(transforms=", ".join('"{}"'.format(t) for t in transforms), lr=lr,
                 node=trainer_node, keys=keys)


def repeated_steps(trainer, steps=6):
    """``forward_backward`` ``steps`` times on the first training batch
    (train mode, mid-epoch so no LR step); returns the logged losses."""
    batch = next(iter(trainer.train_loader_x))
    trainer.set_model_mode("train")
    losses = []
    for _ in range(steps):
        trainer.batch_idx, trainer.num_batches = 0, 1000
        losses.append(trainer.forward_backward(batch)["loss"])
    return losses
