"""The shared split helpers of datasets/splits.py, checked by hand."""
import json
import os
import random
from collections import Counter

import pytest

from clipwb.datasets.caltech101 import IGNORED, NEW_CNAMES
from clipwb.datasets.eurosat import NEW_CNAMES as EUROSAT_CNAMES
from clipwb.datasets.splits import (load_fewshot, read_and_split_data, read_split, save_split,
                             split_trainval, subsample_classes)
from clipwb.engine import DatasetBase, Datum
from clipwb.errors import ConfigError, UserInputError
from tests.dataset_layouts import write_dataset, write_image


@pytest.fixture
def images(tmp_path):
    """10 images for each of the labels 0, 2, 5, 7, 9 (gaps on purpose)."""
    items = []
    for label in (0, 2, 5, 7, 9):
        for i in range(10):
            path = write_image(str(tmp_path / "img" / "c{}".format(label) / "{}.jpg".format(i)),
                               label, i, image_size=8)
            items.append(Datum(impath=path, label=label, classname="c{}".format(label)))
    return items


def tuples(items):
    return [(d.impath, d.label, d.classname) for d in items]


def test_save_and_read_split_round_trip_with_relative_paths(tmp_path, images):
    train, val, test = images[:20], images[20:30], images[30:]
    path = str(tmp_path / "split_zhou_Test.json")
    save_split(train, val, test, path, str(tmp_path / "img"))
    raw = json.load(open(path))
    assert raw["train"][0] == ["c0/0.jpg", 0, "c0"]
    assert not any(os.path.isabs(entry[0]) for key in raw for entry in raw[key])
    back = read_split(path, str(tmp_path / "img"))
    assert [tuples(s) for s in back] == [tuples(train), tuples(val), tuples(test)]


def test_read_split_rejects_a_broken_file(tmp_path):
    path = tmp_path / "split_zhou_X.json"
    path.write_text("{not json")
    with pytest.raises(UserInputError, match="split_zhou_X.json is not valid JSON"):
        read_split(str(path), str(tmp_path))
    path.write_text(json.dumps({"train": [], "val": []}))
    with pytest.raises(UserInputError, match="keys"):
        read_split(str(path), str(tmp_path))
    path.write_text(json.dumps({"train": [["a.jpg", 0]], "val": [], "test": []}))
    with pytest.raises(UserInputError, match=r"\['a.jpg', 0\] in 'train'"):
        read_split(str(path), str(tmp_path))


def test_split_trainval_holds_out_20_percent_of_each_class(images):
    random.seed(0)
    train, val = split_trainval(images)
    assert Counter(d.label for d in val) == {y: 2 for y in (0, 2, 5, 7, 9)}
    assert Counter(d.label for d in train) == {y: 8 for y in (0, 2, 5, 7, 9)}
    assert sorted(tuples(train + val)) == sorted(tuples(images))
    random.seed(0)
    assert tuples(split_trainval(images)[1]) == tuples(val)  # seeded: reproducible


def test_read_and_split_data_ignores_and_renames_caltech_folders(tmp_path):
    w = write_dataset(tmp_path, "Caltech101", n_classes=5, n_per_class=10)
    random.seed(0)
    train, val, test = read_and_split_data(os.path.join(w.dataset_dir, "101_ObjectCategories"),
                                           ignored=IGNORED, new_cnames=NEW_CNAMES)
    # 10 images: round(5) train, round(2) val, 3 test; folders sorted, two ignored
    for split, n in ((train, 5), (val, 2), (test, 3)):
        assert Counter(d.label for d in split) == {y: n for y in range(5)}
    lab2cname = {d.label: d.classname for d in train}
    assert [lab2cname[y] for y in range(5)] == w.classnames  # same labels as CoOp's split file
    assert lab2cname[4] == "airplane" and lab2cname[0] == "face"
    assert not any("BACKGROUND_Google" in d.impath or "Faces_easy" in d.impath
                   for d in train + val + test)


def test_read_and_split_data_renames_eurosat_classes(tmp_path):
    w = write_dataset(tmp_path, "EuroSAT", n_classes=3, n_per_class=5)
    train, _, _ = read_and_split_data(os.path.join(w.dataset_dir, "2750"),
                                      new_cnames=EUROSAT_CNAMES)
    assert sorted({d.classname for d in train}) == ["Annual Crop Land", "Forest",
                                                     "Herbaceous Vegetation Land"]


def test_subsample_classes_by_hand(images):
    test = list(reversed(images))
    base_train, base_val, base_test = subsample_classes(images, None, test, subsample="base")
    # labels 0 2 5 7 9: m = ceil(5 / 2) = 3 -> base {0, 2, 5} -> 0, 1, 2; new {7, 9} -> 0, 1
    assert Counter(d.label for d in base_train) == {0: 10, 1: 10, 2: 10}
    assert base_val is None
    assert {(d.label, d.classname) for d in base_test} == {(0, "c0"), (1, "c2"), (2, "c5")}
    new_train, new_test = subsample_classes(images, test, subsample="new")
    assert {(d.label, d.classname) for d in new_train} == {(0, "c7"), (1, "c9")}
    assert len(new_test) == 20
    assert not {d.impath for d in base_train} & {d.impath for d in new_train}
    same = subsample_classes(images, test, subsample="all")
    assert same[0] is images and same[1] is test


def test_subsample_classes_rejects_unknown_values(images):
    with pytest.raises(ConfigError, match="DATASET.SUBSAMPLE_CLASSES = 'Base'"):
        subsample_classes(images, subsample="Base")


def test_fewshot_draws_the_same_shots_as_dassl_for_a_seed(tmp_path, images):
    """K per class for train then min(K, 4) for val, in Dassl's order of random calls."""
    holder = DatasetBase.__new__(DatasetBase)
    train, val = images[:], images[::2]
    random.seed(7)
    got_train, got_val = load_fewshot(holder, train, val, 6, 7, str(tmp_path))
    random.seed(7)
    want_train, want_val = [], []
    for source, k, out in ((train, 6, want_train), (val, 4, want_val)):
        for label in (0, 2, 5, 7, 9):
            out.extend(random.sample([d for d in source if d.label == label], k))
    assert tuples(got_train) == tuples(want_train)
    assert tuples(got_val) == tuples(want_val)
    assert os.path.isfile(str(tmp_path / "split_fewshot" / "shot_6-seed_7.pkl"))


def test_fewshot_with_no_shots_is_a_no_op(tmp_path, images):
    holder = DatasetBase.__new__(DatasetBase)
    assert load_fewshot(holder, images, None, -1, 1, str(tmp_path)) == (images, None)
    assert os.listdir(str(tmp_path)) == ["img"]
