"""The tiny-dataset fixture itself: real file formats, readable images."""
import json
import os

import pytest
from PIL import Image, UnidentifiedImageError
from scipy.io import loadmat

from tests.dataset_layouts import (ALL_DATASETS, canonical_name, corrupt_one_image,
                                   write_corrupt_image, write_dataset)


def test_names_accept_dataset_and_config_names():
    assert canonical_name("caltech101") == "Caltech101"
    assert canonical_name("dtd") == "DescribableTextures"
    assert canonical_name("IMAGENET_A") == "ImageNetA"
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        canonical_name("mnist")


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_images_are_small_distinct_jpegs(tmp_path, name):
    w = write_dataset(tmp_path, name, image_size=16)
    assert w.images and all(p.startswith(w.dataset_dir) for p in w.images)
    first, other = Image.open(w.images[0]), Image.open(w.images[-1])
    assert first.format == "JPEG" and first.size == (16, 16)
    assert first.convert("RGB").getpixel((8, 8)) != other.convert("RGB").getpixel((8, 8))


def test_flowers_labels_and_names_files(tmp_path):
    w = write_dataset(tmp_path, "OxfordFlowers", n_classes=3, n_per_class=4)
    labels = loadmat(os.path.join(w.dataset_dir, "imagelabels.mat"))["labels"][0]
    assert list(labels[:4]) == [1, 2, 3, 1] and len(labels) == 12
    names = json.load(open(os.path.join(w.dataset_dir, "cat_to_name.json")))
    assert names == {"1": "pink primrose", "2": "hard-leaved pocket orchid",
                     "3": "canterbury bells"}


def test_fgvc_txt_files(tmp_path):
    w = write_dataset(tmp_path, "FGVCAircraft", n_classes=4, n_per_class=5)
    variants = open(os.path.join(w.dataset_dir, "variants.txt")).read().splitlines()
    assert variants == ["707-320", "727-200", "737-200", "Cessna 172"]
    test_lines = open(os.path.join(w.dataset_dir, "images_variant_test.txt")).read().splitlines()
    assert len(test_lines) == 4 * 2 and test_lines[-1].endswith(" Cessna 172")
    image_id = test_lines[0].split(" ")[0]
    assert os.path.isfile(os.path.join(w.dataset_dir, "images", image_id + ".jpg"))


def test_imagenet_a_holds_a_subset_of_classnames(tmp_path):
    w = write_dataset(tmp_path, "ImageNetA", n_classes=3)
    lines = open(os.path.join(w.dataset_dir, "classnames.txt")).read().splitlines()
    folders = sorted(os.listdir(os.path.join(w.dataset_dir, "imagenet-a")))
    assert len(lines) == 6 and folders[0] == "README.txt" and len(folders) == 4
    assert w.classnames == ["tench", "great white shark", "hammerhead shark"]


def test_corrupt_image_helpers(tmp_path):
    path = write_corrupt_image(str(tmp_path / "x" / "bad.jpg"))
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)
    w = write_dataset(tmp_path, "DescribableTextures")
    bad = corrupt_one_image(w)
    assert bad == w.images[0]
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)


def test_too_few_images_per_class_is_refused(tmp_path):
    with pytest.raises(ValueError, match="n_per_class must be >= 3"):
        write_dataset(tmp_path, "EuroSAT", n_per_class=2)
