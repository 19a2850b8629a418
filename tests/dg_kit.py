"""Shared helpers for the GuiDG trainer tests on the tiny CLIP: step-1
expert files and a step-2 config on a tiny PACS (``tests/dg_layouts.py``)."""
import os
import random

import torch

import clipwb.datasets
import clipwb.trainers
from clipwb.engine import DATASET_REGISTRY, get_cfg_default, save_checkpoint
from clipwb.trainers.kit.clip_loader import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_toy_dg(root, sources, targets, pool="B", shots=4, seed=1, global_seed=None,
                 **dataset_keys):
    """The toy world's DomainBed reader (``toy_dg.yaml``) for ``sources`` /
    ``targets``, training pool ``pool``, ``shots`` shots and run seed
    ``seed``; ``dataset_keys`` set more ``DATASET`` keys. Python's ``random``
    is seeded with ``global_seed`` (default ``seed``) first."""
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", "toy_dg.yaml"))
    cfg.DATASET.ROOT = root
    cfg.DATASET.SOURCE_DOMAINS = list(sources)
    cfg.DATASET.TARGET_DOMAINS = list(targets)
    cfg.DATASET.DG_TRAIN_POOL = pool
    cfg.DATASET.NUM_SHOTS = shots
    for key, value in dataset_keys.items():
        cfg.DATASET[key] = value
    cfg.SEED = seed
    random.seed(seed if global_seed is None else global_seed)
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def write_expert(run_dir, n_ctx=4, width=64, seed=0):
    """A step-1 expert (a CoOp context) as ``run_dir/prompt_learner/model-best.pth.tar``."""
    gen = torch.Generator().manual_seed(seed)
    ctx = 0.02 * torch.randn(n_ctx, width, generator=gen)
    save_checkpoint({"state_dict": {"ctx": ctx}, "epoch": 1, "optimizer": None,
                     "scheduler": None, "val_result": 50.0},
                    os.path.join(run_dir, "prompt_learner"), is_best=False,
                    model_name="model-best.pth.tar")


def make_dg_cfg(name, pacs, clip_path, output_dir, opts=(), config="vit_b16_clipood"):
    """A frozen config for DG trainer ``name`` on ``pacs`` (sources art_painting and
    cartoon, target photo) from ``configs/trainers/GuiDG/<config>.yaml``, 32 px,
    2 shots, one epoch; ``opts`` merged last."""
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "trainers", "GuiDG", config + ".yaml"))
    cfg.TRAINER.NAME = name
    cfg.DATASET.NAME = "PACS"
    cfg.DATASET.ROOT = pacs.root
    cfg.DATASET.SOURCE_DOMAINS = ["art_painting", "cartoon"]
    cfg.DATASET.TARGET_DOMAINS = ["photo"]
    cfg.DATASET.NUM_SHOTS = 2
    cfg.SEED = 1
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.BACKBONE.NAME = clip_path
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = list(CLIP_PIXEL_MEAN), list(CLIP_PIXEL_STD)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OPTIM.LR = 1e-4
    cfg.OPTIM.MAX_EPOCH = 1
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg
