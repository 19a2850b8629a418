"""The CoOp-family datasets. Importing this package registers all of them in
``engine.DATASET_REGISTRY`` under CoOp's class names (``DATASET.NAME``)."""
from . import (caltech101, dtd, eurosat, fgvc_aircraft, food101, imagenet,  # noqa: F401
               imagenet_a, imagenet_r, imagenet_sketch, imagenetv2, oxford_flowers,
               oxford_pets, stanford_cars, sun397, ucf101)
from . import domainnet, imagenet_dg, office_home, pacs, terra_incognita, vlcs  # noqa: F401,E501  (GuiDG)
from . import toy, toy_dg  # noqa: F401  (the offline toy world; its GuiDG view)
from .splits import SUBSAMPLE_CHOICES

DATASET_NAMES = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
    "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101",
    "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR",
)


def extend_cfg(cfg):
    """Add the dataset keys the CoOp family adds to Dassl's defaults (idempotent).

    ``DATASET.SUBSAMPLE_CLASSES``: one of ``all`` / ``base`` / ``new``.
    """
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    return cfg


__all__ = ["DATASET_NAMES", "SUBSAMPLE_CHOICES", "extend_cfg"]
