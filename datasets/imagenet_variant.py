"""``ImageNetVariant``: the evaluation-only ImageNet test sets (V2, Sketch, A, R).

Each folder holds its own copy of ImageNet's ``classnames.txt``; images sit in
one sub-folder per class. They are test sets: ``train_x`` = ``test`` = all
images, no val, no few-shot.
"""
from .coop_dataset import CoOpDataset
from .imagenet import CLASSNAMES_DRIVE_ID, read_class_folders, read_classnames
from .sources import require_file


class ImageNetVariant(CoOpDataset):
    test_only = True
    drive_files = {"classnames.txt": CLASSNAMES_DRIVE_ID}

    def read_splits(self):
        classnames_file = require_file(self, "classnames.txt", "class-name file "
                                       "(a copy of DATA/imagenet/classnames.txt)")
        data = self.read_data(read_classnames(classnames_file), classnames_file)
        return data, None, data

    def read_data(self, classnames, classnames_file):
        """Default: folders named by wnid, labels follow the sorted folder names."""
        return read_class_folders(self.image_dir, classnames, classnames_file)


def variant_layout(image_subdir, folder_pattern):
    """The ``layout`` entries of a variant, for error messages."""
    return ("{}/{}/<image>".format(image_subdir, folder_pattern),
            "classnames.txt (copy of DATA/imagenet/classnames.txt)")

