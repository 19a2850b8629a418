"""The 15 CoOp-family datasets, built from tiny copies in their real layouts."""
import os
import pickle
import random
import sys
import types
from collections import Counter

import gdown
import pytest

import clipwb.datasets
from clipwb.datasets.splits import fewshot_cache_path
from clipwb.engine import DATASET_REGISTRY, get_cfg_default
from clipwb.errors import ConfigError, MissingFileError, UserInputError
from tests.dataset_layouts import ALL_DATASETS, CONFIG_NAMES, TEST_ONLY, write_dataset

TRAINABLE = tuple(n for n in ALL_DATASETS if n not in TEST_ONLY)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_cfg(root, name, **opts):
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", CONFIG_NAMES[name] + ".yaml"))
    cfg.DATASET.ROOT = str(root)
    for key, value in opts.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def build(root, name, seed=1, **opts):
    cfg = make_cfg(root, name, **opts)
    cfg.SEED = seed
    random.seed(seed)  # train.py seeds the global state before building the dataset
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def type_of(name):
    return DATASET_REGISTRY.get(name)


def per_class(items):
    return Counter(item.label for item in items)


def as_tuples(items):
    return [(d.impath, d.label, d.classname) for d in items]


def snapshot(path):
    """Every file and folder under ``path`` with size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), path)] = "dir"
        for f in filenames:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.relpath(os.path.join(dirpath, f), path)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def no_gdown(monkeypatch):
    """Any gdown download fails the test; downloads are not opted in."""
    monkeypatch.delenv("DATA_DOWNLOAD", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("gdown.download must not be called")

    monkeypatch.setattr(gdown, "download", forbidden)


def test_every_config_file_names_a_registered_dataset():
    names = []
    for name, cname in CONFIG_NAMES.items():
        cfg = make_cfg("unused", name)
        assert cfg.DATASET.NAME == name
        names.append(cfg.DATASET.NAME)
    assert sorted(names) == sorted(clipwb.datasets.DATASET_NAMES)
    registered = set(DATASET_REGISTRY.registered_names())
    assert set(names) <= registered
    yamls = sorted(os.listdir(os.path.join(REPO, "configs", "datasets")))
    assert [y for y in yamls if y[:-5] in CONFIG_NAMES.values()] == sorted(
        c + ".yaml" for c in CONFIG_NAMES.values())


def test_extend_cfg_is_idempotent():
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    clipwb.datasets.extend_cfg(cfg)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    cfg.merge_from_list(["DATASET.SUBSAMPLE_CLASSES", "new"])
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "new"


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_builds_from_real_layout(tmp_path, name):
    w = write_dataset(tmp_path, name)
    ds = build(tmp_path, name)
    assert ds.classnames == w.classnames
    assert ds.num_classes == w.num_classes == 4
    assert ds.lab2cname == dict(enumerate(w.classnames))
    assert per_class(ds.train_x) == {y: w.counts["train"] for y in range(4)}
    assert per_class(ds.test) == {y: w.counts["test"] for y in range(4)}
    if w.counts["val"] is None:
        assert ds.val is None
        assert as_tuples(ds.train_x) == as_tuples(ds.test)
    else:
        assert per_class(ds.val) == {y: w.counts["val"] for y in range(4)}
    used = {d.impath for d in ds.train_x + ds.test + (ds.val or [])}
    assert used == set(w.images)
    for d in ds.test:
        assert d.classname == w.classnames[d.label]


@pytest.mark.parametrize("name", TRAINABLE)
def test_fewshot_cache_written_and_reused(tmp_path, name):
    w = write_dataset(tmp_path, name)
    ds = build(tmp_path, name, **{"DATASET.NUM_SHOTS": 3})
    assert per_class(ds.train_x) == {y: 3 for y in range(4)}
    if name == "ImageNet":  # CoOp: val is the (full) test set
        assert as_tuples(ds.val) == as_tuples(ds.test)
    else:  # min(K, 4) = 3 wanted, 2 available: all kept
        assert per_class(ds.val) == {y: min(3, w.counts["val"]) for y in range(4)}
    assert per_class(ds.test) == {y: w.counts["test"] for y in range(4)}

    cache = os.path.join(w.dataset_dir, "split_fewshot", "shot_3-seed_1.pkl")
    assert fewshot_cache_path(w.dataset_dir, 3, 1) == cache
    assert os.path.isfile(cache)
    with open(cache, "rb") as f:
        stored = pickle.load(f)
    assert set(stored) == ({"train"} if name == "ImageNet" else {"train", "val"})
    assert as_tuples(stored["train"]) == as_tuples(ds.train_x)
    before = (open(cache, "rb").read(), os.stat(cache).st_mtime_ns)

    random.seed(12345)  # a different global state: only the cache can give the same shots
    cfg = make_cfg(tmp_path, name, **{"DATASET.NUM_SHOTS": 3})
    cfg.SEED = 1
    again = DATASET_REGISTRY.get(name)(cfg)
    assert as_tuples(again.train_x) == as_tuples(ds.train_x)
    assert as_tuples(again.val) == as_tuples(ds.val)
    assert (open(cache, "rb").read(), os.stat(cache).st_mtime_ns) == before

    build(tmp_path, name, seed=2, **{"DATASET.NUM_SHOTS": 3})
    assert sorted(os.listdir(os.path.dirname(cache))) == ["shot_3-seed_1.pkl", "shot_3-seed_2.pkl"]


@pytest.mark.parametrize("name", TEST_ONLY)
def test_test_only_sets_ignore_shots_and_write_nothing(tmp_path, name):
    w = write_dataset(tmp_path, name)
    before = snapshot(tmp_path)
    ds = build(tmp_path, name, **{"DATASET.NUM_SHOTS": 2})
    assert per_class(ds.test) == {y: w.counts["test"] for y in range(4)}
    assert snapshot(tmp_path) == before


def test_imagenet_preprocessed_cache_written_once(tmp_path):
    w = write_dataset(tmp_path, "ImageNet")
    first = build(tmp_path, "ImageNet")
    cache = os.path.join(w.dataset_dir, "preprocessed.pkl")
    before = (open(cache, "rb").read(), os.stat(cache).st_mtime_ns)
    os.remove(os.path.join(w.dataset_dir, "classnames.txt"))  # not needed once cached
    again = build(tmp_path, "ImageNet")
    assert as_tuples(again.train_x) == as_tuples(first.train_x)
    assert as_tuples(again.test) == as_tuples(first.test)
    assert (open(cache, "rb").read(), os.stat(cache).st_mtime_ns) == before


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_base_new_subsampling(tmp_path, name):
    w = write_dataset(tmp_path, name, n_classes=5)  # odd: base gets ceil(5 / 2) = 3
    base = build(tmp_path, name, **{"DATASET.SUBSAMPLE_CLASSES": "base"})
    new = build(tmp_path, name, **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    assert base.classnames == w.classnames[:3]
    assert new.classnames == w.classnames[3:]
    splits = ("train_x", "test") if w.counts["val"] is None else ("train_x", "val", "test")
    for split in splits:
        key = "train" if split == "train_x" else split
        assert per_class(getattr(base, split)) == {y: w.counts[key] for y in range(3)}
        assert per_class(getattr(new, split)) == {y: w.counts[key] for y in range(2)}
        assert not {d.impath for d in getattr(base, split)} & {d.impath for d in getattr(new, split)}
        for ds in (base, new):
            assert all(d.classname == ds.classnames[d.label] for d in getattr(ds, split))


@pytest.mark.parametrize("name", TRAINABLE[:3])
def test_fewshot_then_base_uses_the_cached_shots(tmp_path, name):
    write_dataset(tmp_path, name)
    full = build(tmp_path, name, **{"DATASET.NUM_SHOTS": 2})
    base = build(tmp_path, name, seed=1, **{"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "base"})
    assert as_tuples(base.train_x) == [t for t in as_tuples(full.train_x) if t[1] < 2]


def test_invalid_subsample_value_is_a_config_error(tmp_path):
    write_dataset(tmp_path, "Caltech101")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="DATASET.SUBSAMPLE_CLASSES.*'half'"):
        build(tmp_path, "Caltech101", **{"DATASET.SUBSAMPLE_CLASSES": "half"})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_missing_dataset_folder_is_a_clear_error(tmp_path, name, no_gdown):
    write_dataset(tmp_path / "elsewhere", name)  # a real copy, but not under this DATA
    root = tmp_path / "data"
    root.mkdir()
    folder = os.path.join(str(root), type_of(name).dataset_dir)
    with pytest.raises(MissingFileError) as err:
        build(root, name)
    msg = str(err.value)
    assert folder in msg and "dataset folder" in msg
    assert "--root" in msg and str(root) in msg and "Expected layout" in msg
    assert os.listdir(str(root)) == []


@pytest.mark.parametrize("name", ALL_DATASETS)
def test_missing_split_file_is_a_clear_error_and_never_downloads(tmp_path, name, no_gdown):
    w = write_dataset(tmp_path, name)
    os.remove(w.split_file)
    before = snapshot(tmp_path)
    with pytest.raises(MissingFileError) as err:
        build(tmp_path, name, **{"DATASET.NUM_SHOTS": 2})
    msg = str(err.value)
    assert w.split_file in msg
    drive_id = type_of(name).drive_files.get(os.path.basename(w.split_file))
    if drive_id:
        assert drive_id in msg and "DATA_DOWNLOAD=1" in msg
    assert snapshot(tmp_path) == before


def test_missing_image_folder_names_it(tmp_path, no_gdown):
    w = write_dataset(tmp_path, "Caltech101")
    image_dir = os.path.join(w.dataset_dir, "101_ObjectCategories")
    os.rename(image_dir, image_dir + "_moved")
    with pytest.raises(MissingFileError, match="image folder not found: " + image_dir):
        build(tmp_path, "Caltech101")


def test_image_missing_from_split_names_image_and_split(tmp_path):
    w = write_dataset(tmp_path, "DescribableTextures")
    os.remove(w.images[-1])
    with pytest.raises(MissingFileError) as err:
        build(tmp_path, "DescribableTextures")
    assert w.images[-1] in str(err.value) and w.split_file in str(err.value)


DOWNLOADABLE = tuple(n for n in ALL_DATASETS if n != "FGVCAircraft")


@pytest.mark.parametrize("name", DOWNLOADABLE)
def test_opt_in_download_fetches_the_split_file(tmp_path, monkeypatch, name):
    w = write_dataset(tmp_path, name)
    content = open(w.split_file, "rb").read()
    os.remove(w.split_file)
    calls = []

    def fake_download(url, output, quiet=False, **kwargs):
        calls.append((url, output))
        assert not os.path.exists(w.split_file)  # written to a temp name first
        with open(output, "wb") as f:
            f.write(content)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    monkeypatch.setenv("DATA_DOWNLOAD", "1")
    ds = build(tmp_path, name)
    assert ds.classnames == w.classnames
    assert len(calls) == 1
    assert type_of(name).drive_files[os.path.basename(w.split_file)] in calls[0][0]
    assert open(w.split_file, "rb").read() == content
    assert not [f for f in os.listdir(w.dataset_dir) if f.endswith(".part")]


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    w = write_dataset(tmp_path, "EuroSAT")
    os.remove(w.split_file)
    before = snapshot(tmp_path)

    def html_instead(url, output, quiet=False, **kwargs):
        with open(output, "w") as f:
            f.write("<html>Too many users have viewed or downloaded this file</html>")
        return output

    monkeypatch.setattr(gdown, "download", html_instead)
    monkeypatch.setenv("DATA_DOWNLOAD", "1")
    with pytest.raises(MissingFileError, match="split_zhou_EuroSAT.json.*by hand"):
        build(tmp_path, "EuroSAT")
    assert snapshot(tmp_path) == before


def test_corrupt_fewshot_cache_names_the_file(tmp_path):
    w = write_dataset(tmp_path, "OxfordPets")
    cache = fewshot_cache_path(w.dataset_dir, 2, 1)
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:
        f.write(b"\x80\x05garbage")
    with pytest.raises(UserInputError, match=r"{}.*Delete it".format(cache)):
        build(tmp_path, "OxfordPets", **{"DATASET.NUM_SHOTS": 2})
    with open(cache, "wb") as f:
        pickle.dump({"train": []}, f)  # no "val"
    with pytest.raises(UserInputError, match="'val'"):
        build(tmp_path, "OxfordPets", **{"DATASET.NUM_SHOTS": 2})


def test_reads_a_cache_pickled_by_real_dassl(tmp_path, monkeypatch):
    """CoOp's caches hold ``dassl.data.datasets.base_dataset.Datum``; read them without dassl."""
    w = write_dataset(tmp_path, "Food101")
    fake = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:  # Dassl's attribute names
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__, Datum.__qualname__ = fake.__name__, "Datum"
    fake.Datum = Datum
    parts = fake.__name__.split(".")
    for i in range(1, len(parts)):  # the parent packages pickle imports on the way
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    picks = [w.images[0], w.images[8]]  # one image of class 0 and one of class 1
    data = {"train": [Datum(picks[0], 0, "apple_pie"), Datum(picks[1], 1, "baby_back_ribs")],
            "val": [Datum(picks[1], 1, "baby_back_ribs")]}
    cache = fewshot_cache_path(w.dataset_dir, 1, 1)
    os.makedirs(os.path.dirname(cache))
    with open(cache, "wb") as f:
        pickle.dump(data, f)
    for i in range(1, len(parts) + 1):  # reading must not need dassl
        monkeypatch.delitem(sys.modules, ".".join(parts[:i]), raising=False)
    ds = build(tmp_path, "Food101", **{"DATASET.NUM_SHOTS": 1})
    assert as_tuples(ds.train_x) == [(picks[0], 0, "apple_pie"), (picks[1], 1, "baby_back_ribs")]
    assert as_tuples(ds.val) == [(picks[1], 1, "baby_back_ribs")]


def test_caches_follow_a_moved_data_folder(tmp_path):
    """Caches hold absolute paths (as CoOp's do): a moved DATA folder is re-rooted."""
    write_dataset(tmp_path / "old", "ImageNet")
    first = build(tmp_path / "old", "ImageNet", **{"DATASET.NUM_SHOTS": 1})
    os.rename(str(tmp_path / "old"), str(tmp_path / "new"))
    moved = build(tmp_path / "new", "ImageNet", **{"DATASET.NUM_SHOTS": 1})
    old_root, new_root = str(tmp_path / "old"), str(tmp_path / "new")
    assert as_tuples(moved.train_x) == [(p.replace(old_root, new_root), y, c)
                                        for p, y, c in as_tuples(first.train_x)]
    assert len(moved.test) == len(first.test)
    assert all(d.impath.startswith(new_root) for d in moved.test)


def test_cache_listing_a_vanished_image_says_delete(tmp_path):
    w = write_dataset(tmp_path, "UCF101")
    build(tmp_path, "UCF101", **{"DATASET.NUM_SHOTS": 1})
    cache = fewshot_cache_path(w.dataset_dir, 1, 1)
    with open(cache, "rb") as f:
        stored = pickle.load(f)
    stored["train"][0]._impath = "/nowhere/ucf101/UCF-101-midframes/gone.jpg"
    with open(cache, "wb") as f:
        pickle.dump(stored, f)
    with pytest.raises(UserInputError, match="gone.jpg, which does not exist.*Delete it"):
        build(tmp_path, "UCF101", **{"DATASET.NUM_SHOTS": 1})


def test_root_defaults_to_the_data_env_var(tmp_path, monkeypatch):
    w = write_dataset(tmp_path, "EuroSAT")
    monkeypatch.setenv("DATA", str(tmp_path))
    ds = build("", "EuroSAT")
    assert ds.classnames == w.classnames
