"""Oxford-IIIT Pets (Parkhi et al., 2012): 37 cat and dog breeds, CoOp's fixed split."""

from .coop_dataset import CoOpDataset


class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_name = "split_zhou_OxfordPets.json"
    layout = ("images/<Breed>_<n>.jpg", "annotations/", split_name)
    source = ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz and "
              "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz "
              "(extract both under oxford_pets/)")
    drive_files = {split_name: "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"}
