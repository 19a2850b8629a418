"""FGVC-Aircraft (Maji et al., 2013): 100 aircraft model variants.

The official split is used as is: ``variants.txt`` lists the classes (label =
line order) and ``images_variant_{train,val,test}.txt`` hold ``<image id>
<variant>`` lines for ``images/<image id>.jpg``.
"""
import os

from clipwb.errors import UserInputError

from .coop_dataset import CoOpDataset
from .sources import require_file
from .splits import make_datum

SPLIT_FILES = ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    layout = ("images/<id>.jpg", "variants.txt") + SPLIT_FILES
    source = ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
              "fgvc-aircraft-2013b.tar.gz (extract it, keep only data/ and rename it "
              "to fgvc_aircraft/)")

    def read_splits(self):
        variants_file = require_file(self, "variants.txt", "class list")
        with open(variants_file, "r") as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        paths = [require_file(self, name, "split file") for name in SPLIT_FILES]
        return tuple(self._read_split_file(path, cname2lab) for path in paths)

    def _read_split_file(self, path, cname2lab):
        items = []
        with open(path, "r") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.strip().split(" ")
                if not fields[0]:
                    continue
                classname = " ".join(fields[1:])
                if classname not in cname2lab:
                    raise UserInputError(
                        "{} line {}: variant {!r} is not in variants.txt; the txt files "
                        "come from different releases, re-extract fgvc-aircraft-2013b."
                        .format(path, lineno, classname))
                impath = os.path.join(self.image_dir, fields[0] + ".jpg")
                items.append(make_datum(impath, cname2lab[classname], classname, listed_in=path))
        return items
