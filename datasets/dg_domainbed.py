"""``DomainBedDataset``: a domain-generalization dataset in the DomainBed layout.

``DATA/<dataset folder>/<domain folder>/<class folder>/<image>`` (DomainBed's
download script writes exactly this). A subclass declares ``dataset_dir``,
``domains`` (the names used in ``DATASET.SOURCE_DOMAINS`` / ``TARGET_DOMAINS``)
and, where a folder is named differently, ``domain_folders``.

What a run gets (GuiDG's 16-shot protocol, spec section 4.2):

- ``train_x``: K shots per class from the training pool (``DATASET.DG_TRAIN_POOL``:
  A for a domain expert, B for guided fine-tuning) of every source domain;
- ``val``: K shots per class from the other pool of the source domains;
- ``test``: the 20% test part of every target domain.

K shots are drawn with ``DATASET.DG_SHOT_SEED`` (-1, the default: the training
seed). Full data (``NUM_SHOTS 0``) uses the whole pools, or with
``DATASET.DG_FULL_DATA official`` the official code's DomainBed split
(``datasets/dg_full_data.py``): pool A = 30 % and pool B = 70 % of each source
domain, test = a 20 % holdout of each target domain.

Domain labels are the positions in the source (train / val) or target (test)
list, as in Dassl's DG datasets. Class labels follow the sorted class folders
of all domains on disk; a class name is its folder name, lower case, with
``_`` read as a space.
"""
import os

from clipwb.engine import DatasetBase
from clipwb.errors import MissingFileError, UserInputError

from .dg_full_data import load_official_full_split
from .dg_splits import (check_domains, load_pools, load_shots, official_full_data, shot_seed,
                        train_pool, with_domain)
from .sources import data_root, root_hint
from .splits import list_images, list_subfolders, make_datum

POOL_FRACTIONS = (0.4, 0.4)  # pool A, pool B; the remaining 20% is the test part
CACHE_FOLDER = "split_guidg"


def class_name(folder):
    """Class name of a DomainBed class folder: ``Alarm_Clock`` -> ``alarm clock``."""
    return folder.replace("_", " ").strip().lower()


class DomainBedDataset(DatasetBase):
    """Base class; subclasses set the attributes below and register themselves."""

    dataset_dir = ""
    domains = []
    domain_folders = {}  # domain name -> folder name on disk, where they differ
    source = ""          # where to get the data, for error messages

    def __init__(self, cfg):
        self.pool = train_pool(cfg)
        self.official_full = official_full_data(cfg)
        seed = shot_seed(cfg)
        sources = list(cfg.DATASET.SOURCE_DOMAINS)
        targets = list(cfg.DATASET.TARGET_DOMAINS)
        check_domains(self, sources, targets)
        self.root = data_root(cfg)
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.cache_dir = os.path.join(self.dataset_dir, CACHE_FOLDER)
        if not os.path.isdir(self.dataset_dir):
            raise MissingFileError(
                "{}: dataset folder not found: {}. Expected the DomainBed layout "
                "DATA/{}/<domain>/<class>/<image> with the domains {} (DATA = {}, {}). "
                "{}".format(type(self).__name__, self.dataset_dir, type(self).dataset_dir,
                            list(self.domains), self.root, root_hint(), self.source).strip())
        self.class_folders = self.find_class_folders(sources + targets)
        labels = {folder: i for i, folder in enumerate(self.class_folders)}

        other = "B" if self.pool == "A" else "A"
        train_x, val, test = [], [], []
        for index, domain in enumerate(sources):
            pools = self.domain_pools(domain, labels)
            pool = {"A": pools[0], "B": pools[1]}
            shots = load_shots(self.cache_dir, domain, pools[0], pools[1],
                               cfg.DATASET.NUM_SHOTS, seed)
            shots = {"A": shots[0], "B": shots[1]}
            if not pool[self.pool]:
                raise UserInputError("{}: pool {} of domain {} is empty (too few images in "
                                     "{}).".format(type(self).__name__, self.pool, domain,
                                                   self.domain_dir(domain)))
            train_x += with_domain(shots[self.pool], index)
            val += with_domain(shots[other], index)
        for index, domain in enumerate(targets):
            test += with_domain(self.domain_pools(domain, labels)[2], index)
        if not test:
            raise UserInputError("{}: the target domains {} have no test images.".format(
                type(self).__name__, targets))
        super().__init__(train_x=train_x, val=val or None, test=test)
        # Every class of the dataset, even one that some domain lacks.
        self._num_classes = len(self.class_folders)
        self._lab2cname = {i: class_name(f) for i, f in enumerate(self.class_folders)}
        self._classnames = [class_name(f) for f in self.class_folders]

    # -- folders ------------------------------------------------------------
    def folder_of(self, domain):
        return self.domain_folders.get(domain, domain)

    def domain_dir(self, domain):
        """The folder of ``domain``; its alternative spelling (``_`` <-> space) too."""
        folder = self.folder_of(domain)
        for name in (folder, folder.replace("_", " "), folder.replace(" ", "_")):
            path = os.path.join(self.dataset_dir, name)
            if os.path.isdir(path):
                return path
        return os.path.join(self.dataset_dir, folder)

    def find_class_folders(self, used_domains):
        """Sorted class folders over every domain folder on disk; each used
        domain must exist and hold class folders."""
        for domain in used_domains:
            path = self.domain_dir(domain)
            if not os.path.isdir(path):
                found = list_subfolders(self.dataset_dir)
                raise MissingFileError(
                    "{}: the folder of domain {!r} is missing: {}. Found: {}. Expected "
                    "DATA/{}/<domain>/<class>/<image> for the domains {}. {}".format(
                        type(self).__name__, domain, path, found or "nothing",
                        type(self).dataset_dir, list(self.domains), self.source).strip())
            if not list_subfolders(path):
                raise UserInputError(
                    "{}: {} has no class folders; expected {}/<class>/<image>.".format(
                        type(self).__name__, path, path))
        folders = set()
        for domain in self.domains:
            path = self.domain_dir(domain)
            if os.path.isdir(path):
                folders.update(list_subfolders(path))
        return sorted(folders)

    def list_domain(self, domain, labels):
        """Every image of ``domain`` as a Datum (label from ``labels``)."""
        path = self.domain_dir(domain)
        items = []
        for folder in list_subfolders(path):
            for name in list_images(os.path.join(path, folder)):
                items.append(make_datum(os.path.join(path, folder, name), labels[folder],
                                        class_name(folder)))
        if not items:
            raise UserInputError("{}: domain {!r} has no images under {}.".format(
                type(self).__name__, domain, path))
        return items

    def domain_pools(self, domain, labels):
        """``(pool A, pool B, test)`` of a domain (cached split): the 40/40/20
        pools, or the official full-data split (30 % / 70 % / 20 % test)."""
        if self.official_full:
            return load_official_full_split(self.cache_dir, domain, self.env_index(domain),
                                            self.dataset_dir,
                                            lambda: self.list_domain(domain, labels))
        return load_pools(self.cache_dir, domain, self.dataset_dir,
                          lambda: self.list_domain(domain, labels), POOL_FRACTIONS)

    def env_index(self, domain):
        """DomainBed's index of ``domain``: its folder's place among the sorted
        domain folders (DomainBed lists the dataset folder's sub-folders)."""
        folders = {d: os.path.basename(self.domain_dir(d)) for d in self.domains}
        return sorted(folders.values()).index(folders[domain])
