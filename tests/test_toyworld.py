"""The offline toy world: renderer, dataset writer, ToyShapes and the shipped toy CLIP."""
import io
import json
import math
import os

import numpy as np
import pytest
import torch

from clipwb.errors import ConfigError, UserInputError
from clipwb.toyworld import TOY_CLIP_PATH
from clipwb.toyworld import render as R
from clipwb.toyworld import writer as W

SMALL = dict(n_train=3, n_val=2, n_test=2)


def jpeg_bytes(img):
    buf = io.BytesIO()
    img.save(buf, **W.JPEG_SETTINGS)
    return buf.getvalue()


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toydata")
    W.write_toy_dataset(str(root), **SMALL)
    return str(root)


# ------------------------------------------------------------------ render

def test_render_is_a_pure_function_of_its_arguments():
    a = R.render(7, "textured", 3, seed=5)
    b = R.render(7, "textured", 3, seed=5)
    assert a.size == (32, 32) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    assert jpeg_bytes(a) == jpeg_bytes(b)
    assert R.render(7, "textured", 3, seed=6).tobytes() != a.tobytes()
    assert R.render(7, "textured", 4, seed=5).tobytes() != a.tobytes()
    assert R.render(7, "plain", 3, seed=5, size=64).size == (64, 64)


def test_class_names_and_base_new_order():
    assert R.NUM_CLASSES == len(R.CLASSNAMES) == 25
    assert len(set(R.CLASSNAMES)) == 25
    for name, (c, s) in zip(R.CLASSNAMES, R.CLASS_ATTRS):
        assert name == "{} {}".format(R.COLOUR_NAMES[c], R.SHAPE_NAMES[s])
    assert R.CLASSNAMES[0] == "red circle"
    base = R.CLASS_ATTRS[:math.ceil(25 / 2)]
    # every colour and every shape is seen among the base classes: new = new combinations
    assert {c for c, _ in base} == set(range(5)) and {s for _, s in base} == set(range(5))
    assert R.class_folder(1) == "green_square"


def test_bad_label_or_domain_is_a_clear_error():
    with pytest.raises(ConfigError, match="0..24"):
        R.render(25)
    with pytest.raises(ConfigError, match="sketch"):
        R.render(0, "cartoon")


def test_domains_look_different():
    label, colour = 0, np.array(R.COLOURS["red"], dtype=float)  # red circle
    imgs = {d: np.asarray(R.render(label, d, 0, seed=0), dtype=float) for d in R.DOMAINS}

    def coloured_fraction(a):
        return (np.abs(a - colour).sum(-1) < 120).mean()

    def roughness(a):  # mean absolute difference between horizontal neighbours
        return np.abs(np.diff(a, axis=1)).mean()

    # sketch draws only the outline: far fewer pixels of the class colour than plain
    assert coloured_fraction(imgs["sketch"]) < 0.6 * coloured_fraction(imgs["plain"])
    assert coloured_fraction(imgs["plain"]) > 0.1
    # noisy and textured are much rougher than plain
    assert roughness(imgs["noisy"]) > 3 * roughness(imgs["plain"])
    assert roughness(imgs["textured"]) > 1.5 * roughness(imgs["plain"])
    for a in R.DOMAINS:
        for b in R.DOMAINS:
            if a < b:
                assert np.abs(imgs[a] - imgs[b]).mean() > 5, (a, b)


# ------------------------------------------------------------------ writer

def test_writer_writes_the_coop_layout(small_root):
    from clipwb.datasets.splits import read_split

    folder = os.path.join(small_root, "toy_shapes")
    assert sorted(os.listdir(small_root)) == ["toy_shapes"]  # no temp folder left
    with open(os.path.join(folder, W.SPLIT_FILE)) as f:
        split = json.load(f)
    per_domain = {"train": 3, "val": 2, "test": 2}
    for key, n in per_domain.items():
        assert len(split[key]) == 25 * 4 * n
    rel, label, cname = split["train"][0]
    assert rel == "plain/red_circle/train_000.jpg" and label == 0 and cname == "red circle"
    # a test image on disk has exactly the bytes the renderer gives for its index
    rel, label, _ = split["test"][-1]
    with open(os.path.join(folder, "images", rel), "rb") as f:
        on_disk = f.read()
    assert on_disk == jpeg_bytes(R.render(label, "noisy", 3 + 2 + 1, seed=0))

    train, val, test = read_split(os.path.join(folder, W.SPLIT_FILE), os.path.join(folder, "images"))
    assert len(train) == 300 and len(val) == 200 and len(test) == 200
    assert {d.classname for d in test} == set(R.CLASSNAMES)
    assert all(R.CLASSNAMES[d.label] == d.classname for d in train)
    assert W.check_toy_dataset(folder)["counts"] == per_domain


def test_writer_refuses_to_overwrite(small_root):
    split = os.path.join(small_root, "toy_shapes", W.SPLIT_FILE)
    before = os.path.getmtime(split)
    with pytest.raises(UserInputError, match="never overwritten"):
        W.write_toy_dataset(small_root, **SMALL)
    assert os.path.getmtime(split) == before
    assert W.ensure_toy_dataset(small_root) == os.path.join(small_root, "toy_shapes")


def test_partial_or_corrupt_folder_is_reported(tmp_path):
    folder = tmp_path / "toy_shapes"
    (folder / "images").mkdir(parents=True)
    with pytest.raises(UserInputError, match="Delete the folder") as err:
        W.ensure_toy_dataset(str(tmp_path))
    assert str(folder) in str(err.value)

    other = tmp_path / "b"
    W.write_toy_dataset(str(other), n_train=1, n_val=1, n_test=1, domains=("plain",))
    os.remove(str(other / "toy_shapes" / "images" / "plain" / "blue_star" / "test_000.jpg"))
    with pytest.raises(UserInputError, match="blue_star/test_000.jpg"):
        W.ensure_toy_dataset(str(other))


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return R.render(*args, **kwargs)

    monkeypatch.setattr(W, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        W.write_toy_dataset(str(tmp_path), **SMALL)
    assert os.listdir(str(tmp_path)) == []


def test_an_unwritable_data_folder_is_one_sentence_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("")
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "dangling"))
    for root, why in ((tmp_path / "a_file" / "data", "Not a directory"),
                      (tmp_path / "dangling" / "data", "No such file or directory")):
        with pytest.raises(UserInputError) as err:
            W.ensure_toy_dataset(str(root))
        assert str(err.value) == (
            "Cannot write the toy dataset into the DATA folder {} ({}). Set DATA (the scripts) "
            "or --root (train.py) to a folder you can write to.".format(root, why))
    assert sorted(os.listdir(str(tmp_path))) == ["a_file", "dangling"]


def test_a_write_failing_midway_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(W.json, "dump", full_disk)
    with pytest.raises(UserInputError, match=r"the DATA folder {} \(No space left on device\)"
                       .format(tmp_path)):
        W.write_toy_dataset(str(tmp_path), **SMALL)
    assert os.listdir(str(tmp_path)) == []


# ------------------------------------------------------------------ ToyShapes

def toy_cfg(root, **opts):
    import clipwb.datasets
    from clipwb.engine import get_cfg_default

    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "datasets", "toy.yaml"))
    cfg.DATASET.ROOT = root
    cfg.SEED = 1
    for key, value in opts.items():
        node = cfg.DATASET
        setattr(node, key, value)
    return cfg


def test_toyshapes_base_new_and_fewshot(small_root):
    import clipwb.datasets.toy  # noqa: F401  (registers ToyShapes)
    from clipwb.engine import build_dataset

    base = build_dataset(toy_cfg(small_root, NUM_SHOTS=2, SUBSAMPLE_CLASSES="base"))
    assert base.num_classes == 13 and base.classnames == list(R.CLASSNAMES[:13])
    assert len(base.train_x) == 13 * 2 and len(base.val) == 13 * 2 and len(base.test) == 13 * 2
    # configs/datasets/toy.yaml trains and tests base-to-novel on the "noisy" domain
    assert all("/noisy/" in d.impath.replace(os.sep, "/") for d in base.train_x + base.test)
    cache = os.path.join(small_root, "toy_shapes", "split_fewshot", "shot_2-seed_1.pkl")
    assert os.path.isfile(cache)

    new = build_dataset(toy_cfg(small_root, NUM_SHOTS=2, SUBSAMPLE_CLASSES="new"))
    assert new.num_classes == 12 and new.classnames == list(R.CLASSNAMES[13:])
    assert {d.label for d in new.test} == set(range(12))
    # same seed and shots: the same few-shot images as the base run (from the cache)
    assert sorted(d.impath for d in new.train_x) == sorted(
        d.impath for d in build_dataset(toy_cfg(small_root, NUM_SHOTS=2)).train_x
        if d.label >= 13)


def test_toyshapes_domains(small_root):
    import clipwb.datasets.toy  # noqa: F401
    from clipwb.engine import build_dataset

    ds = build_dataset(toy_cfg(small_root, SOURCE_DOMAINS=["plain", "sketch"],
                               TARGET_DOMAINS=["noisy"]))
    assert len(ds.train_x) == 25 * 3 * 2 and len(ds.test) == 25 * 2
    assert {d.domain for d in ds.train_x} == {0, 1}
    assert all(d.domain == (0 if "/plain/" in d.impath.replace(os.sep, "/") else 1) for d in ds.train_x)
    assert all("/noisy/" in d.impath.replace(os.sep, "/") and d.domain == 0 for d in ds.test)
    with pytest.raises(ConfigError, match="SOURCE_DOMAINS.*cartoon"):
        build_dataset(toy_cfg(small_root, SOURCE_DOMAINS=["cartoon"]))


# ------------------------------------------------------------------ toy CLIP

def test_shipped_toy_clip_is_fp16_and_composes_novel_classes():
    import clip
    from clip.model import CLIP

    from clipwb.toyworld import train_clip as T

    assert os.path.isfile(TOY_CLIP_PATH), "clipwb/toyworld/toy_clip.pt is missing"
    assert os.path.getsize(TOY_CLIP_PATH) <= 15 * 2 ** 20
    sd = torch.load(TOY_CLIP_PATH, map_location="cpu")
    assert all(v.dtype == torch.float16 for v in sd.values())
    assert list(sd) == list(CLIP(**T.TOY_CLIP_KWARGS).state_dict())
    model = clip.model.build_model(sd).float().eval()

    assert set(T.HELD_OUT) <= set(T.NOVEL)
    images, labels = T.dataset_test_images(T.NOVEL, "plain", per_class=9)
    images, labels = images[:100], labels[:100]
    chance = 100.0 / len(T.NOVEL)
    # shipped model: 87% here (chance 8.3%)
    assert T.zero_shot_accuracy(model, images, labels, T.NOVEL) >= 4 * chance
    held = torch.tensor([l in T.HELD_OUT for l in labels.tolist()])
    assert held.sum() >= 30
    # classes the toy CLIP never saw, as image or caption (65% here)
    assert T.zero_shot_accuracy(model, images[held], labels[held], T.NOVEL) >= 3 * chance


def test_train_clip_loss_decreases_and_saves_fp16(tmp_path, capsys):
    import argparse

    from clipwb.toyworld import train_clip as T

    from tests.tiny_clip import build_tiny_clip

    args = argparse.Namespace(seed=0, steps=30, batch_size=32, lr=1e-3, wd=0.05, attr_weight=0.5,
                              pool=2, threads=1, print_freq=100)
    model, history = T.train(args, build_tiny_clip().train())
    assert len(history) == 30
    assert np.mean(history[-5:]) < history[0] - 0.5

    out = str(tmp_path / "clip.pt")
    T.save_fp16(model, out)
    sd = torch.load(out)
    assert all(v.dtype == torch.float16 for v in sd.values())
    rows = T.report(T.load_fp16(out), per_class=1, domains=("plain",))
    T.print_report(rows, per_class=1)
    text = capsys.readouterr().out
    assert "held-out classes (never seen by the toy CLIP): red cross" in text
    assert [r["domain"] for r in rows] == ["plain"] and 0 <= rows[0]["novel"] <= 100
