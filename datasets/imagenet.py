"""ImageNet (Deng et al., 2009): 1,000 classes; the official val set is the test set.

``classnames.txt`` (``<wnid> <class name>`` per line, CLIP's names) gives the
names; labels follow the sorted ``images/train`` folders. The Datum lists are
cached once in ``imagenet/preprocessed.pkl`` (CoOp's cache, never rewritten).
The ImageNet variants share ``read_classnames`` and ``read_class_folders``.
"""
import os
from collections import OrderedDict

from clipwb.errors import UserInputError

from .coop_dataset import CoOpDataset
from .sources import require_dir, require_file
from .splits import list_images, list_subfolders, make_datum, read_datum_pickle, write_pickle_once

CLASSNAMES_DRIVE_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"


def read_classnames(path):
    """``OrderedDict`` wnid -> class name from a ``classnames.txt`` file."""
    classnames = OrderedDict()
    with open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.strip().split(" ")
            if not fields[0]:
                continue
            if len(fields) < 2:
                raise UserInputError(
                    "{} line {}: expected '<wnid> <class name>', got {!r}. Use the "
                    "classnames.txt of CoOp's data guide (Drive id {})."
                    .format(path, lineno, line.strip(), CLASSNAMES_DRIVE_ID))
            classnames[fields[0]] = " ".join(fields[1:])
    return classnames


def read_class_folders(image_dir, classnames, classnames_file, folder_labels=None):
    """Datum for every image of ``image_dir/<folder>/``.

    ``classnames`` maps folder name -> class name; labels follow ``folder_labels``
    (folder -> label) or else the sorted folder names.
    """
    folders = list_subfolders(image_dir)
    if folder_labels is None:
        folder_labels = {folder: i for i, folder in enumerate(folders)}
    items = []
    for folder in folders:
        if folder not in classnames:
            raise UserInputError(
                "Folder {} is not listed in {}. Use the complete ImageNet classnames.txt "
                "(Drive id {}) or remove the folder.".format(
                    os.path.join(image_dir, folder), classnames_file, CLASSNAMES_DRIVE_ID))
        if folder not in folder_labels:
            raise UserInputError(
                "Folder {} has no training folder of the same name; the train and val "
                "folders must hold the same classes.".format(os.path.join(image_dir, folder)))
        for imname in list_images(os.path.join(image_dir, folder)):
            impath = os.path.join(image_dir, folder, imname)
            items.append(make_datum(impath, folder_labels[folder], classnames[folder]))
    return items


class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"
    layout = ("images/train/<wnid>/<image>.JPEG", "images/val/<wnid>/<image>.JPEG",
              "classnames.txt")
    source = ("https://image-net.org (extract the train and val sets to imagenet/images/"
              "{train,val}/<wnid>/)")
    drive_files = {"classnames.txt": CLASSNAMES_DRIVE_ID}
    val_is_test = True

    def read_splits(self):
        self.preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.exists(self.preprocessed):
            data = read_datum_pickle(self.preprocessed, ("train", "test"), self.dataset_dir)
            return data["train"], None, data["test"]
        train_dir = require_dir(self, os.path.join(self.image_dir, "train"), "training images")
        val_dir = require_dir(self, os.path.join(self.image_dir, "val"), "validation images")
        classnames_file = require_file(self, "classnames.txt", "class-name file")
        classnames = read_classnames(classnames_file)
        labels = {folder: i for i, folder in enumerate(list_subfolders(train_dir))}
        train = read_class_folders(train_dir, classnames, classnames_file, labels)
        test = read_class_folders(val_dir, classnames, classnames_file, labels)
        write_pickle_once(self.preprocessed, {"train": train, "test": test})
        return train, None, test
