"""``CoOpDataset``: the pipeline every CoOp-family dataset shares.

read the fixed train / val / test split -> few-shot subset (cached) ->
base / new class subsampling -> ``DatasetBase(train_x, val, test)``.

A dataset file only declares where its files are (class attributes below) and,
where its split is not a ``split_zhou_*.json`` file, overrides ``read_splits``.
"""
import os

from clipwb.engine import DatasetBase

from .sources import data_root, require_dir, require_file
from .splits import check_subsample, load_fewshot, read_split, subsample_classes


class CoOpDataset(DatasetBase):
    """Base class; subclasses set the attributes and register themselves."""

    dataset_dir = ""      # folder under DATA (the instance attribute is the absolute path)
    image_subdir = ""     # image folder inside it; "" = the dataset folder itself
    split_name = ""       # split_zhou_<Name>.json, paths relative to the image folder
    layout = ()           # entries under the dataset folder, for error messages
    source = ""           # where the images come from, for error messages
    drive_files = {}      # {file name under the dataset folder: public Drive id}
    test_only = False     # evaluation-only datasets: no few-shot, train_x = test, no val
    val_is_test = False   # ImageNet: the val split is the test split

    def __init__(self, cfg):
        subsample = check_subsample(cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))
        self.root = data_root(cfg)
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = (os.path.join(self.dataset_dir, self.image_subdir)
                          if self.image_subdir else self.dataset_dir)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        require_dir(self, self.dataset_dir, "dataset folder")
        require_dir(self, self.image_dir, "image folder")

        train, val, test = self.read_splits()
        if not self.test_only:
            train, val = load_fewshot(self, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED,
                                      self.dataset_dir)
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        if self.val_is_test:
            val = test
        super().__init__(train_x=train, val=val, test=test)

    def read_splits(self):
        """Return ``(train, val, test)``; default: the dataset's split JSON file."""
        self.split_path = require_file(self, self.split_name, "split file")
        return read_split(self.split_path, self.image_dir)
