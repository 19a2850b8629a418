"""Food-101 (Bossard et al., 2014): 101 dishes, CoOp's fixed split."""

from .coop_dataset import CoOpDataset


class Food101(CoOpDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_name = "split_zhou_Food101.json"
    layout = ("images/<class>/<image>.jpg", "meta/", split_name)
    source = ("https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ "
              "(extract food-101.tar.gz under DATA)")
    drive_files = {split_name: "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"}
