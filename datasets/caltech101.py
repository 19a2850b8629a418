"""Caltech101 (Fei-Fei et al., 2004): 100 object classes, CoOp's fixed split."""

from .coop_dataset import CoOpDataset

# Used when a split is made from the folders (splits.read_and_split_data): the
# background class and the duplicate face folder are left out, plural or
# capitalised folder names become CLIP-friendly class names.
IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


class Caltech101(CoOpDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_name = "split_zhou_Caltech101.json"
    layout = ("101_ObjectCategories/<class>/<image>.jpg", split_name)
    source = ("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz"
              " (extract it under caltech-101/)")
    drive_files = {split_name: "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"}
