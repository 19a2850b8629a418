"""Shared helpers for the engine tests: a tiny image dataset and a toy trainer.

Images are 8x8 PNGs whose colour encodes the class (class c is bright in
channel c), so a linear model learns them in a couple of epochs. Everything
is imported from ``engine`` and works with either backend.
"""
import os
import os.path as osp
import sys
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from clipwb.engine import (DATASET_REGISTRY, TRAINER_REGISTRY, DatasetBase, Datum,
                    TrainerX, build_lr_scheduler, build_optimizer,
                    compute_accuracy, get_cfg_default)

CLASSNAMES = ["red", "green", "blue"]


def write_toy_images(root, per_class=(6, 2, 2), seed=0):
    """Write ``root/toy/<split>/<class>/<i>.png``; return the folder."""
    rng = np.random.RandomState(seed)
    base = osp.join(root, "toy")
    for split, n in zip(("train", "val", "test"), per_class):
        for label, name in enumerate(CLASSNAMES):
            folder = osp.join(base, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                pixels = rng.randint(0, 90, size=(8, 8, 3))
                pixels[..., label] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(
                    osp.join(folder, "{}.png".format(i)))
    return base


class ToyDataset(DatasetBase):
    """Three colour classes read from ``DATASET.ROOT/toy``."""

    dataset_dir = "toy"

    def __init__(self, cfg):
        base = osp.join(cfg.DATASET.ROOT, self.dataset_dir)
        splits = [self._read(base, s) for s in ("train", "val", "test")]
        train = self.generate_fewshot_dataset(splits[0],
                                              num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=splits[1], test=splits[2])

    @staticmethod
    def _read(base, split):
        items = []
        for label, name in enumerate(CLASSNAMES):
            folder = osp.join(base, split, name)
            for fname in sorted(os.listdir(folder)):
                items.append(Datum(impath=osp.join(folder, fname), label=label,
                                   classname=name))
        return items


class ToyTrainer(TrainerX):
    """Linear classifier on flattened pixels; lr updated once per epoch."""

    def build_model(self):
        size = self.cfg.INPUT.SIZE
        self.model = nn.Sequential(nn.Flatten(),
                                   nn.Linear(3 * size[0] * size[1], self.num_classes))
        self.model.to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("linear", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(),
                "acc": compute_accuracy(output, label)[0].item()}


def register_toys():
    """Register ToyDataset / ToyTrainer (idempotent)."""
    if "ToyDataset" not in DATASET_REGISTRY.registered_names():
        DATASET_REGISTRY.register(ToyDataset)
    if "ToyTrainer" not in TRAINER_REGISTRY.registered_names():
        TRAINER_REGISTRY.register(ToyTrainer)


def toy_cfg(root, output_dir, max_epoch=2, **overrides):
    """A CPU config for the toy dataset/trainer; ``overrides`` are KEY=VALUE
    pairs with dots written as '__' (e.g. ``OPTIM__LR=0.1``)."""
    register_toys()
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "ToyDataset"
    cfg.TRAINER.NAME = "ToyTrainer"
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SEED = 1
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.TRANSFORMS = ("normalize",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.05
    cfg.OPTIM.MAX_EPOCH = max_epoch
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.TRAIN.PRINT_FREQ = 2
    opts = []
    for key, value in overrides.items():
        opts += [key.replace("__", "."), value]
    cfg.merge_from_list(opts)
    return cfg


@contextmanager
def logging_to(output_dir, setup_logger):
    """Run ``setup_logger(output_dir)`` and restore ``sys.stdout`` afterwards."""
    saved = sys.stdout
    try:
        setup_logger(str(output_dir))
        yield
    finally:
        logger, sys.stdout = sys.stdout, saved
        if logger is not saved:
            logger.flush()
            if getattr(logger, "file", None) is not None:
                logger.file.close()
            # Dassl's Logger closes its console stream when collected.
            logger.console = _NullStream()


class _NullStream:
    def write(self, msg):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def seed_everything(seed):
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
