"""Describable Textures (Cimpoi et al., 2014): 47 texture classes, CoOp's fixed split."""

from .coop_dataset import CoOpDataset


class DescribableTextures(CoOpDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_name = "split_zhou_DescribableTextures.json"
    layout = ("images/<class>/<image>.jpg", "imdb/", "labels/", split_name)
    source = ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz "
              "(extract it under DATA)")
    drive_files = {split_name: "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"}
