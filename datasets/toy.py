"""ToyShapes: the offline procedural dataset of :mod:`toyworld` (25 colour-shape classes).

Written on first use to ``DATA/toy_shapes`` (see ``clipwb/toyworld/writer.py`` for the
layout); then the same pipeline as every CoOp dataset: split file -> few-shot
cache -> base/new subsampling. Domains (``plain``, ``textured``, ``sketch``,
``noisy``): train and val come from ``DATASET.SOURCE_DOMAINS``, test from
``DATASET.TARGET_DOMAINS``; both default to ``noisy``, where the toy
CLIP's zero-shot accuracy leaves room for prompt learning. ``Datum.domain`` is the
index of the image's domain in that list, as in Dassl's DG datasets.

Images are 32 x 32; the input size is left to the trainer config (the toy CLIP
takes ``INPUT.SIZE (32, 32)``).
"""
import os

from clipwb.engine import DatasetBase, Datum
from clipwb.errors import ConfigError

from clipwb.toyworld.render import DOMAINS
from clipwb.toyworld.writer import DATASET_DIR, IMAGE_DIR, SPLIT_FILE, ensure_toy_dataset

from .sources import data_root
from .splits import check_subsample, load_fewshot, read_split, subsample_classes

DEFAULT_DOMAINS = ("noisy",)


def _domains(cfg, key):
    names = tuple(cfg.DATASET.get(key, ()) or ()) or DEFAULT_DOMAINS
    bad = [d for d in names if d not in DOMAINS]
    if bad:
        raise ConfigError("DATASET.{} = {}: unknown toy domain {}; choose from {} "
                          "(e.g. --{} plain sketch).".format(
                              key, list(names), bad, ", ".join(DOMAINS),
                              key.lower().replace("_", "-")))
    return names


def _in_domains(items, domains, image_dir):
    """Items under ``image_dir/<one of domains>/``; domain = index in ``domains``."""
    out = []
    for item in items:
        name = os.path.relpath(item.impath, image_dir).split(os.sep)[0]
        if name in domains:
            out.append(Datum(impath=item.impath, label=item.label, domain=domains.index(name),
                             classname=item.classname))
    return out


class ToyShapes(DatasetBase):
    dataset_dir = DATASET_DIR

    def __init__(self, cfg):
        subsample = check_subsample(cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))
        sources = _domains(cfg, "SOURCE_DOMAINS")
        targets = _domains(cfg, "TARGET_DOMAINS")
        self.dataset_dir = ensure_toy_dataset(data_root(cfg))
        self.image_dir = os.path.join(self.dataset_dir, IMAGE_DIR)
        self.split_path = os.path.join(self.dataset_dir, SPLIT_FILE)

        train, val, test = read_split(self.split_path, self.image_dir)
        train = _in_domains(train, sources, self.image_dir)
        val = _in_domains(val, sources, self.image_dir)
        test = _in_domains(test, targets, self.image_dir)

        # the few-shot cache depends on the source domains: the default (noisy)
        # uses CoOp's split_fewshot/ folder, other choices a folder of their own
        cache_dir = self.dataset_dir
        if sources != DEFAULT_DOMAINS:
            cache_dir = os.path.join(self.dataset_dir, "sources_" + "+".join(sources))
        train, val = load_fewshot(self, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED, cache_dir)
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)
