"""Stanford Cars (Krause et al., 2013): 196 car models, CoOp's fixed split.

The split file's paths are relative to the dataset folder (``cars_train/...``,
``cars_test/...``), not to an image folder.
"""
import os


from .coop_dataset import CoOpDataset
from .sources import require_dir


class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_name = "split_zhou_StanfordCars.json"
    layout = ("cars_train/<image>.jpg", "cars_test/<image>.jpg", "devkit/",
              "cars_test_annos_withlabels.mat", split_name)
    source = ("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz, "
              "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz, "
              "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz and "
              "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat "
              "(extract all under stanford_cars/)")
    drive_files = {split_name: "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"}

    def read_splits(self):
        for sub in ("cars_train", "cars_test"):
            require_dir(self, os.path.join(self.dataset_dir, sub), "image folder")
        return super().read_splits()
