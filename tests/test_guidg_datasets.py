"""The GuiDG DG datasets: DomainBed readers (pools, splits, shots, caches,
errors) and ImageNet-DG's class restriction, on tiny fixtures."""
import os
import random

import pytest

import clipwb.datasets  # noqa: F401  (registers the datasets)
import clipwb.trainers
from clipwb.engine import DATASET_REGISTRY, get_cfg_default
from clipwb.errors import ConfigError, MissingFileError
from tests.dataset_layouts import write_image
from tests.dg_layouts import DOMAINBED, write_domainbed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(root, name, sources, targets, pool="B", shots=2, seed=1):
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)
    cfg.DATASET.NAME = name
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.SOURCE_DOMAINS = list(sources)
    cfg.DATASET.TARGET_DOMAINS = list(targets)
    cfg.DATASET.DG_TRAIN_POOL = pool
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    random.seed(12345 + seed)  # the pools and shots must not depend on the global state
    return DATASET_REGISTRY.get(name)(cfg)


def paths(items):
    return {item.impath for item in items}


def per_class(items):
    counts = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return counts


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    return write_domainbed(tmp_path_factory.mktemp("dg"), "PACS", n_classes=3, n_per_class=10)


def test_pools_are_disjoint_and_sized_40_40_20(pacs):
    a = build(pacs.root, "PACS", ["art_painting", "cartoon"], ["photo"], pool="A", shots=0)
    b = build(pacs.root, "PACS", ["art_painting", "cartoon"], ["photo"], pool="B", shots=0)
    assert a.classnames == ["dog", "elephant", "giraffe"] and a.num_classes == 3
    # full pools (NUM_SHOTS 0): 4 + 4 per class and domain, 2 per class for test
    assert per_class(a.train_x) == {0: 8, 1: 8, 2: 8}
    assert paths(a.train_x) == paths(b.val) and paths(a.val) == paths(b.train_x)
    assert not paths(a.train_x) & paths(a.val)
    assert per_class(a.test) == {0: 2, 1: 2, 2: 2}
    assert {item.domain for item in a.train_x} == {0, 1}
    assert all("/photo/" in p for p in paths(a.test))
    # the test part of a domain is disjoint from its pools
    photo = build(pacs.root, "PACS", ["photo"], ["photo"], pool="A", shots=0)
    assert not paths(photo.test) & (paths(photo.train_x) | paths(photo.val))
    assert len(photo.train_x) + len(photo.val) + len(photo.test) == 30
    assert os.path.isfile(os.path.join(pacs.dataset_dir, "split_guidg", "photo.json"))


def test_shots_are_respected_deterministic_and_cached(pacs):
    first = build(pacs.root, "PACS", ["sketch", "cartoon"], ["art_painting"], shots=3, seed=2)
    assert per_class(first.train_x) == {0: 6, 1: 6, 2: 6}  # 3 shots x 2 domains
    assert per_class(first.val) == {0: 6, 1: 6, 2: 6}
    full = build(pacs.root, "PACS", ["sketch", "cartoon"], ["art_painting"], shots=0)
    assert paths(first.train_x) <= paths(full.train_x)
    assert paths(first.val) <= paths(full.val)
    cache = os.path.join(pacs.dataset_dir, "split_guidg", "shot_3-seed_2", "sketch.pkl")
    split = os.path.join(pacs.dataset_dir, "split_guidg", "sketch.json")
    stamps = os.path.getmtime(cache), os.path.getmtime(split)
    again = build(pacs.root, "PACS", ["cartoon", "sketch"], ["art_painting"], shots=3, seed=2)
    assert paths(again.train_x) == paths(first.train_x)
    assert (os.path.getmtime(cache), os.path.getmtime(split)) == stamps  # never rewritten
    # domain labels follow this run's source order
    assert {i.domain for i in again.train_x if "/sketch/" in i.impath} == {1}
    other_seed = build(pacs.root, "PACS", ["sketch", "cartoon"], ["art_painting"], shots=3,
                       seed=3)
    assert paths(other_seed.train_x) != paths(first.train_x)


def test_fresh_copy_gives_the_same_split(tmp_path, pacs):
    other = write_domainbed(tmp_path, "PACS", n_classes=3, n_per_class=10)
    mine = build(pacs.root, "PACS", ["cartoon"], ["sketch"], shots=2, seed=1)
    theirs = build(other.root, "PACS", ["cartoon"], ["sketch"], shots=2, seed=1)
    rel = lambda items, base: sorted(os.path.relpath(p, base) for p in paths(items))  # noqa: E731
    assert rel(mine.train_x, pacs.root) == rel(theirs.train_x, other.root)
    assert rel(mine.test, pacs.root) == rel(theirs.test, other.root)


def test_office_home_real_world_folder_and_class_names(tmp_path):
    w = write_domainbed(tmp_path, "OfficeHome", n_classes=2, n_per_class=5,
                        domains=["Art", "Real World"])
    ds = build(w.root, "OfficeHome", ["Art"], ["Real_World"], shots=1)
    assert ds.classnames == ["alarm clock", "backpack"]
    assert len(ds.test) == 2 and all("Real World" in p for p in paths(ds.test))


def test_bad_domains_and_missing_folders(tmp_path, pacs):
    with pytest.raises(ConfigError, match="'photos' is not a domain of PACS"):
        build(pacs.root, "PACS", ["photos"], ["sketch"])
    with pytest.raises(ConfigError, match="TARGET_DOMAINS is empty"):
        build(pacs.root, "PACS", ["photo"], [])
    with pytest.raises(ConfigError, match="DG_TRAIN_POOL"):
        build(pacs.root, "PACS", ["photo"], ["sketch"], pool="C")
    with pytest.raises(MissingFileError, match="dataset folder not found: .*VLCS"):
        build(pacs.root, "VLCS", ["LabelMe"], ["SUN09"])
    partial = write_domainbed(tmp_path, "PACS", n_classes=2, n_per_class=5,
                              domains=["photo", "sketch"])
    with pytest.raises(MissingFileError, match="domain 'cartoon' is missing: .*cartoon"):
        build(partial.root, "PACS", ["cartoon"], ["sketch"])


def test_every_domainbed_dataset_is_registered_with_its_domains():
    for name, (_, folders, _) in DOMAINBED.items():
        cls = DATASET_REGISTRY.get(name)
        assert [f.replace(" ", "_") for f in folders] == cls.domains
        with open(os.path.join(REPO, "configs", "datasets",
                               {"OfficeHome": "office_home", "TerraIncognita": "terra_incognita",
                                "DomainNet": "domainnet"}.get(name, name.lower()) + ".yaml")) as f:
            assert name in f.read()


# ---------------------------------------------------------------- ImageNet-DG

WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
         ("n01491361", "tiger shark")]


def write_imagenet_dg(root):
    os.makedirs(os.path.join(root, "imagenet"))
    with open(os.path.join(root, "imagenet", "classnames.txt"), "w") as f:
        f.write("".join("{} {}\n".format(w, n) for w, n in WNIDS))

    def fill(folder, names, n):
        for label, name in enumerate(names):
            for i in range(n):
                write_image(os.path.join(root, folder, name, "{}.jpg".format(i)), label, i)

    wnids = [w for w, _ in WNIDS]
    fill("imagenet/images/train", wnids, 6)
    fill("imagenet-sketch/images", wnids, 4)
    fill("imagenetv2/imagenetv2-matched-frequency-format-val", ["0", "1", "2", "3"], 2)
    fill("imagenet-adversarial/imagenet-a", [wnids[1], wnids[3]], 3)  # a 2-class target


def test_imagenet_dg_restricts_sources_to_the_target_classes(tmp_path):
    write_imagenet_dg(str(tmp_path))
    sources = ["imagenet_train", "imagenet_sketch", "imagenetv2"]
    ds = build(tmp_path, "ImageNetDG", sources, ["imagenet_a"], pool="B", shots=16)
    assert ds.classnames == ["goldfish", "tiger shark"] and ds.num_classes == 2
    assert len(ds.test) == 6 and per_class(ds.test) == {0: 3, 1: 3}
    # 50/50 pools: train 3 + sketch 2 + V2 1 images per class in pool B
    assert per_class(ds.train_x) == {0: 6, 1: 6}
    for item in ds.train_x:
        folder = os.path.basename(os.path.dirname(item.impath))
        assert folder in ("n01443537", "n01491361", "1", "3")
        assert item.classname == ds.classnames[item.label]
    assert {i.domain for i in ds.train_x} == {0, 1, 2}
    experts = build(tmp_path, "ImageNetDG", ["imagenet_sketch"], ["imagenet_a"], pool="A",
                    shots=1)
    assert per_class(experts.train_x) == {0: 1, 1: 1}
    assert not paths(experts.train_x) & paths(ds.train_x)
    with pytest.raises(ConfigError, match="not a source domain"):
        build(tmp_path, "ImageNetDG", ["imagenet_a"], ["imagenet_r"])
    with pytest.raises(MissingFileError, match="imagenet-rendition"):
        build(tmp_path, "ImageNetDG", sources, ["imagenet_r"])
