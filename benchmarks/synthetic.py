"""A synthetic dataset for the benchmarks: a few random images per class.

The trainers need a registered dataset to be built (class names, a train
split for DiSa's prototypes, domain labels for the DG trainers); the timed
steps themselves run on random tensors. :func:`write_synthetic_dataset`
writes ``n_per_class`` random PNGs per class and domain plus a
``manifest.json`` that :class:`BenchSynthetic` reads from ``DATASET.ROOT``.
"""
import json
import os

import torch
from PIL import Image

from clipwb.engine import DATASET_REGISTRY, DatasetBase, Datum
from clipwb.errors import MissingFileError

DATASET_NAME = "BenchSynthetic"
MANIFEST = "manifest.json"
#: source-domain names of the DG trainers' batches
DOMAINS = ("domain_a", "domain_b")


def synthetic_classnames(n_classes):
    return ["object_{}".format(i) for i in range(n_classes)]


def write_synthetic_dataset(root, n_classes, image_size, n_per_class=1, seed=0):
    """Write the images and manifest under ``root``; return ``root``."""
    os.makedirs(root, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    items = []
    for label, name in enumerate(synthetic_classnames(n_classes)):
        for domain in range(len(DOMAINS)):
            for i in range(n_per_class):
                filename = "{}_{}_{}.png".format(name, DOMAINS[domain], i)
                pixels = torch.randint(0, 256, (image_size, image_size, 3), generator=gen)
                Image.fromarray(pixels.to(torch.uint8).numpy()).save(
                    os.path.join(root, filename))
                items.append([filename, label, domain])
    manifest = {"classnames": synthetic_classnames(n_classes), "items": items}
    with open(os.path.join(root, MANIFEST), "w") as f:
        json.dump(manifest, f)
    return root


def _read_manifest(root):
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise MissingFileError("{} not found: DATASET.ROOT of {} must be a folder written by "
                               "benchmarks.synthetic.write_synthetic_dataset.".format(
                                   path, DATASET_NAME))
    with open(path) as f:
        return json.load(f)


if DATASET_NAME not in DATASET_REGISTRY.registered_names():

    @DATASET_REGISTRY.register()
    class BenchSynthetic(DatasetBase):
        """Every image in train, val and test (only shapes and names matter)."""

        def __init__(self, cfg):
            root = cfg.DATASET.ROOT
            manifest = _read_manifest(root)
            names = manifest["classnames"]
            items = [Datum(impath=os.path.join(root, f), label=label, domain=domain,
                           classname=names[label])
                     for f, label, domain in manifest["items"]]
            super().__init__(train_x=items, val=items, test=items)
