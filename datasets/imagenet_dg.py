"""ImageNet-DG (GuiDG, appendix "Details on ImageNet-DG", Table 7).

Sources: ImageNet train, ImageNet-Sketch, ImageNet-V2; targets (one per task):
ImageNet-A (200 classes), ImageNet val (1,000 classes), ImageNet-R (200 classes).
The source images are restricted to the target's class set (the wnid folders
of the target), labels are 0..C-1 in sorted-wnid order.

It reads the folders the CoOp ImageNet-family datasets use (no copy needed):

| domain | folder under DATA |
|---|---|
| imagenet_train | imagenet/images/train/<wnid> |
| imagenet_val | imagenet/images/val/<wnid> |
| imagenet_sketch | imagenet-sketch/images/<wnid> |
| imagenetv2 | imagenetv2/imagenetv2-matched-frequency-format-val/<label 0..999> |
| imagenet_a | imagenet-adversarial/imagenet-a/<wnid> |
| imagenet_r | imagenet-rendition/imagenet-r/<wnid> |

and the class names of ``DATA/imagenet/classnames.txt``. Each source domain is
split once, per class, 50/50 into pool A (experts) and pool B (step 2),
cached in ``DATA/imagenet/split_guidg/<domain>.json``; K shots per class are
drawn from each pool for the target's classes (``split_guidg/shot_K-seed_S/
<target>/<domain>.pkl``, S = ``DATASET.DG_SHOT_SEED`` or the training seed;
ImageNet-V2 has 10 images a class, so 5 per pool).
The target test set is the whole target domain. The official code has no
full-data protocol for ImageNet-DG, so ``DATASET.DG_FULL_DATA official`` with
``NUM_SHOTS 0`` is refused.
"""
import os

from clipwb.engine import DatasetBase
from clipwb.errors import ConfigError, MissingFileError, UserInputError

from .dg_splits import (FULL_DATA_KEY, load_pools, load_shots, official_full_data, shot_seed,
                        train_pool, with_domain)
from .imagenet import CLASSNAMES_DRIVE_ID, read_classnames
from .sources import data_root
from .splits import list_images, list_subfolders, make_datum

SOURCE_DOMAINS = ["imagenet_train", "imagenet_sketch", "imagenetv2"]
TARGET_DOMAINS = ["imagenet_a", "imagenet_val", "imagenet_r"]
DOMAIN_FOLDERS = {
    "imagenet_train": "imagenet/images/train",
    "imagenet_val": "imagenet/images/val",
    "imagenet_sketch": "imagenet-sketch/images",
    "imagenetv2": "imagenetv2/imagenetv2-matched-frequency-format-val",
    "imagenet_a": "imagenet-adversarial/imagenet-a",
    "imagenet_r": "imagenet-rendition/imagenet-r",
}
LABEL_FOLDERS = ("imagenetv2",)  # class folders named by label (0..999), not wnid
POOL_FRACTIONS = (0.5, 0.5)
CACHE_FOLDER = "imagenet/split_guidg"


class ImageNetDG(DatasetBase):
    """ImageNet-DG: one target of ``TARGET_DOMAINS``, sources from ``SOURCE_DOMAINS``."""

    dataset_dir = "imagenet"
    domains = SOURCE_DOMAINS + TARGET_DOMAINS

    def __init__(self, cfg):
        self.pool = train_pool(cfg)
        if official_full_data(cfg):
            raise ConfigError(
                "ImageNetDG: {} official is DomainBed's full-data protocol and the official "
                "code has none for ImageNet-DG: use {} pools (or NUM_SHOTS > 0)."
                .format(FULL_DATA_KEY, FULL_DATA_KEY))
        seed = shot_seed(cfg)
        sources = list(cfg.DATASET.SOURCE_DOMAINS)
        targets = list(cfg.DATASET.TARGET_DOMAINS)
        self.check_task(sources, targets)
        target = targets[0]
        self.root = data_root(cfg)
        self.cache_dir = os.path.join(self.root, CACHE_FOLDER)
        classnames_file = os.path.join(self.root, "imagenet", "classnames.txt")
        if not os.path.isfile(classnames_file):
            raise MissingFileError(
                "ImageNetDG: class-name file not found: {} (DATA = {}). Use the "
                "classnames.txt of CoOp's data guide (Google-Drive id {}).".format(
                    classnames_file, self.root, CLASSNAMES_DRIVE_ID))
        self.all_classnames = read_classnames(classnames_file)
        self.wnids = list(self.all_classnames)
        full_label = {wnid: i for i, wnid in enumerate(self.wnids)}

        # The target's class set, relabelled 0..C-1 in sorted-wnid order.
        target_items = self.list_domain(target, full_label)
        kept = sorted({item.label for item in target_items})
        relabel = {old: new for new, old in enumerate(kept)}
        test = with_domain(target_items, 0, relabel)

        other = "B" if self.pool == "A" else "A"
        train_x, val = [], []
        for index, domain in enumerate(sources):
            pool_a, pool_b, _ = load_pools(
                self.cache_dir, domain, self.root,
                lambda d=domain: self.list_domain(d, full_label), POOL_FRACTIONS)
            pool_a = with_domain(pool_a, 0, relabel)
            pool_b = with_domain(pool_b, 0, relabel)
            shots = load_shots(self.cache_dir, domain, pool_a, pool_b,
                               cfg.DATASET.NUM_SHOTS, seed, key=target)
            shots = {"A": shots[0], "B": shots[1]}
            if not shots[self.pool]:
                raise UserInputError(
                    "ImageNetDG: domain {} has no images of the {} classes of {} in "
                    "pool {}.".format(domain, len(kept), target, self.pool))
            train_x += with_domain(shots[self.pool], index)
            val += with_domain(shots[other], index)
        super().__init__(train_x=train_x, val=val or None, test=test)
        names = [self.all_classnames[self.wnids[old]] for old in kept]
        self._num_classes = len(kept)
        self._lab2cname = dict(enumerate(names))
        self._classnames = names

    @staticmethod
    def check_task(sources, targets):
        if len(targets) != 1 or targets[0] not in TARGET_DOMAINS + SOURCE_DOMAINS:
            raise ConfigError(
                "ImageNetDG: DATASET.TARGET_DOMAINS = {} must name one target domain "
                "(its class set defines the task): one of {}.".format(targets, TARGET_DOMAINS))
        if not sources:
            raise ConfigError("ImageNetDG: DATASET.SOURCE_DOMAINS is empty; choose from "
                              "{}.".format(SOURCE_DOMAINS))
        for name in sources:
            if name not in SOURCE_DOMAINS:
                raise ConfigError("ImageNetDG: DATASET.SOURCE_DOMAINS: {!r} is not a source "
                                  "domain; choose from {}.".format(name, SOURCE_DOMAINS))

    def list_domain(self, domain, full_label):
        """Every image of ``domain`` as a Datum labelled in the 1,000-class space."""
        folder = os.path.join(self.root, DOMAIN_FOLDERS[domain])
        if not os.path.isdir(folder):
            raise MissingFileError(
                "ImageNetDG: the folder of domain {} is missing: {} (DATA = {}). It is "
                "the folder the CoOp dataset of that domain reads; see DATASETS.md of "
                "CoOp for how to get it.".format(domain, folder, self.root))
        items = []
        for sub in list_subfolders(folder):
            if domain in LABEL_FOLDERS:
                if not sub.isdigit() or int(sub) >= len(self.wnids):
                    raise UserInputError("ImageNetDG: folder {} is not a class label 0..{}."
                                         .format(os.path.join(folder, sub), len(self.wnids) - 1))
                wnid = self.wnids[int(sub)]
            else:
                wnid = sub
                if wnid not in full_label:
                    raise UserInputError(
                        "ImageNetDG: folder {} is not a wnid listed in {}.".format(
                            os.path.join(folder, sub),
                            os.path.join(self.root, "imagenet", "classnames.txt")))
            for name in list_images(os.path.join(folder, sub)):
                items.append(make_datum(os.path.join(folder, sub, name), full_label[wnid],
                                        self.all_classnames[wnid]))
        if not items:
            raise UserInputError("ImageNetDG: domain {} has no images under {}.".format(
                domain, folder))
        return items
