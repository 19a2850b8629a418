"""Oxford Flowers 102 (Nilsback & Zisserman, 2008): 102 flower species, CoOp's fixed split."""

from .coop_dataset import CoOpDataset


class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_name = "split_zhou_OxfordFlowers.json"
    layout = ("jpg/image_<00001>.jpg", "imagelabels.mat", "cat_to_name.json", split_name)
    source = ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz and "
              "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat "
              "(extract/put both under oxford_flowers/)")
    drive_files = {split_name: "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
                   "cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"}
