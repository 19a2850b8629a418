"""ImageNetV2 matched-frequency (Recht et al., 2019): a new ImageNet test set.

Its class folders are named by label (``0`` .. ``999``), the position of the
class in ``classnames.txt``.
"""
import os

from clipwb.errors import UserInputError

from .imagenet_variant import ImageNetVariant, variant_layout
from .splits import list_images, list_subfolders, make_datum


class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    layout = variant_layout(image_subdir, "<label 0..999>")
    source = ("https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-"
              "frequency.tar.gz (extract it under imagenetv2/)")

    def read_data(self, classnames, classnames_file):
        names = list(classnames.values())
        items = []
        for folder in sorted(list_subfolders(self.image_dir), key=lambda f: (len(f), f)):
            if not folder.isdigit() or int(folder) >= len(names):
                raise UserInputError(
                    "Folder {} is not a class label 0..{} of {}. Remove it or use the "
                    "complete classnames.txt.".format(os.path.join(self.image_dir, folder),
                                                      len(names) - 1, classnames_file))
            label = int(folder)
            for imname in list_images(os.path.join(self.image_dir, folder)):
                items.append(make_datum(os.path.join(self.image_dir, folder, imname),
                                        label, names[label]))
        return items
