"""ImageFolder: a user's folder of images trains and tests with no code.

The folders are written by the test (tests/dataset_layouts.py: toy-world
images under class folders named like ``red_circle``). The reader is checked
in-process (split file, class names, the three layouts, every bad input); the
last test runs the real script, ``DATA=<folder> bash scripts/disa/base2new.sh
image_folder 1``, on the toy CLIP.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from clipwb.engine import get_cfg_default
from clipwb.errors import ConfigError, UserInputError
from tests.dataset_layouts import write_image_folder
from tests.e2e_helpers import REPO, results, subprocess_env

import clipwb.datasets
from clipwb.datasets.image_folder import ImageFolder


def config(folder, *opts, seed=1, shots=2, subsample="all"):
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", "image_folder.yaml"))
    cfg.DATASET.ROOT = str(folder)
    cfg.SEED = seed
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.merge_from_list(list(opts))
    return cfg


def read(folder, *opts, **kw):
    return ImageFolder(config(folder, *opts, **kw))


def split_file(folder):
    return os.path.join(str(folder), "split_{}.json".format(os.path.basename(str(folder))))


def load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    written = write_image_folder(str(folder), n_classes=6, n_per_class=10)
    return folder, written


def test_split_is_written_once_in_coop_format_with_a_fixed_seed(photos):
    folder, written = photos
    read(folder, seed=1)
    path = split_file(folder)
    split = load_json(path)
    assert sorted(split) == ["test", "train", "val"]
    keys = sorted(written)  # labels follow the sorted folder names
    per_class = {}
    for part, entries in split.items():
        for rel, label, classname in entries:
            key = rel.split("/")[0]
            assert label == keys.index(key) and classname == key.replace("_", " ")
            assert os.path.isfile(os.path.join(str(folder), rel))
            per_class.setdefault((part, key), []).append(rel)
    # 50 / 20 / 30 % of each class's 10 images, every image exactly once
    for key in keys:
        assert [len(per_class[(p, key)]) for p in ("train", "val", "test")] == [5, 2, 3]
        listed = sum((per_class[(p, key)] for p in ("train", "val", "test")), [])
        assert sorted(listed) == sorted(os.path.relpath(p, str(folder)).replace(os.sep, "/")
                                        for p in written[key])
    # a run with another seed reads the same split (never rewritten) and draws
    # its own few shots
    with open(path, "rb") as f:
        before = f.read()
    other = read(folder, seed=2)
    with open(path, "rb") as f:
        assert f.read() == before
    assert sorted(os.listdir(os.path.join(str(folder), "split_fewshot"))) == [
        "shot_2-seed_1.pkl", "shot_2-seed_2.pkl"]
    assert len(other.train_x) == 2 * 6 and len(other.test) == 3 * 6
    # the split does not depend on the run's seed: a fresh copy gives the same file
    shutil.copytree(str(folder), str(folder) + "_copy",
                    ignore=shutil.ignore_patterns("split_*"))
    read(str(folder) + "_copy", seed=3)
    assert load_json(split_file(str(folder) + "_copy")) == split


def test_base_and_new_halves_and_classnames_txt(photos):
    folder, written = photos
    keys = sorted(written)
    with open(os.path.join(str(folder), "classnames.txt"), "w") as f:
        f.write("# folder, then the class name\n{}\tcrimson circle\n".format(keys[0]))
    base = read(folder, subsample="base")
    new = read(folder, subsample="new")
    names = ["crimson circle"] + [k.replace("_", " ") for k in keys[1:]]
    assert base.classnames == names[:3] and new.classnames == names[3:]
    assert {d.label for d in new.test} == {0, 1, 2}
    assert {d.classname for d in new.test} == set(names[3:])


def test_train_test_folders_and_a_csv(tmp_path):
    folder = tmp_path / "given"
    written = write_image_folder(str(folder), n_classes=4, n_per_class=10, layout="splits")
    data = read(folder, shots=0)
    test_paths = {p for paths in written.values() for p in paths if os.sep + "test" + os.sep in p}
    assert {d.impath for d in data.test} == test_paths
    # no val/ folder: 20 % of each class of train/ becomes val
    assert len(data.val) == 4 * 2 and len(data.train_x) == 4 * 8
    assert not {d.impath for d in data.val} & {d.impath for d in data.train_x}

    folder = tmp_path / "listed"
    written = write_image_folder(str(folder), n_classes=4, n_per_class=10, layout="csv")
    data = read(folder, shots=0)
    assert data.classnames == sorted(k.replace("_", " ") for k in written)
    by_class = {}
    for d in data.train_x + data.val + data.test:
        by_class.setdefault(d.classname, set()).add(d.impath)
    assert by_class == {k.replace("_", " "): set(v) for k, v in written.items()}


def _empty_class(folder):
    os.makedirs(os.path.join(folder, "purple_star"))
    return "purple_star holds no image"


def _non_image(folder):
    # known non-image names are skipped; any other file in a class folder stops the run
    open(os.path.join(folder, "red_circle", ".DS_Store"), "w").close()
    open(os.path.join(folder, "README.md"), "w").close()
    with open(os.path.join(folder, "red_circle", "notes.txt"), "w") as f:
        f.write("not a picture")
    return "red_circle/notes.txt is not an image"


def _single_class(folder):
    for name in os.listdir(folder):
        if name != "red_circle":
            shutil.rmtree(os.path.join(folder, name))
    return "found 1 class"


def _duplicate_names(folder):
    shutil.copytree(os.path.join(folder, "red_circle"), os.path.join(folder, "red circle"))
    return "both get the class name 'red circle'"


def _too_few_images(folder):
    for name in sorted(os.listdir(os.path.join(folder, "green_square")))[3:]:
        os.remove(os.path.join(folder, "green_square", name))
    return "'green square' has 3 image(s), too few for a 50/20/30 train/val/test split"


def _unknown_classnames_entry(folder):
    with open(os.path.join(folder, "classnames.txt"), "w") as f:
        f.write("red_cirle red circle\n")
    return "names ['red_cirle'], which is no class folder"


@pytest.mark.parametrize("make, kwargs", [
    (_empty_class, {}), (_non_image, {}), (_single_class, {}), (_duplicate_names, {}),
    (_too_few_images, {}), (_unknown_classnames_entry, {}),
], ids=["empty-class", "non-image", "single-class", "duplicate-names", "too-few-images",
        "classnames-typo"])
def test_bad_folder_is_one_sentence(tmp_path, make, kwargs):
    folder = str(tmp_path / "bad")
    write_image_folder(folder, n_classes=4, n_per_class=8)
    expected = make(folder)
    with pytest.raises(UserInputError) as err:
        read(folder, **kwargs)
    message = str(err.value)
    assert expected in message and message.startswith("ImageFolder " + folder)
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    assert not os.path.exists(split_file(folder))  # nothing written for a bad folder


def test_too_few_classes_for_base_to_new_and_a_bad_split_setting(tmp_path):
    folder = str(tmp_path / "three")
    write_image_folder(folder, n_classes=3, n_per_class=8)
    assert read(folder).num_classes == 3  # all classes: fine
    with pytest.raises(UserInputError, match="3 classes are too few for base-to-new"):
        read(folder, subsample="new")
    with pytest.raises(ConfigError, match=r"DATASET.IMAGE_FOLDER.SPLIT = \[0.6, 0.5\]"):
        read(folder, "DATASET.IMAGE_FOLDER.SPLIT", "(0.6, 0.5)")


def test_changed_folder_is_reported_not_used_and_the_split_is_kept(photos, capsys):
    folder, written = photos
    read(folder)
    path = split_file(folder)
    with open(path, "rb") as f:
        before = f.read()
    extras = [os.path.join(str(folder), "red_circle", "img_new{}.png".format(i))
              for i in range(7)]
    for extra in extras:
        shutil.copy(written["red_circle"][0], extra)
    os.remove(written["blue_triangle"][0])
    with pytest.raises(UserInputError) as err:
        read(folder)
    message = str(err.value)
    # the first five of each change by name, with the counts
    assert ("changed since {} was written: 7 image(s) added (red_circle/img_new0.png, "
            "red_circle/img_new1.png, red_circle/img_new2.png, red_circle/img_new3.png, "
            "red_circle/img_new4.png and 2 more), 1 removed (blue_triangle/img_000.png);"
            .format(path)) in message
    assert "deleting or adding images makes a new split" in message
    assert "delete {} and {}".format(path, os.path.join(str(folder), "split_fewshot")) in message
    assert "not comparable with those of the old one" in message and "\n" not in message
    with open(path, "rb") as f:
        assert f.read() == before
    for extra in extras:
        os.remove(extra)
    with pytest.raises(UserInputError,
                       match=r"0 image\(s\) added, 1 removed \(blue_triangle/img_000.png\)"):
        read(folder)
    # other split settings: the file is used as it is, with a note
    shutil.copy(written["green_square"][0], written["blue_triangle"][0])
    capsys.readouterr()
    read(folder, "DATASET.IMAGE_FOLDER.SPLIT", "(0.6, 0.2)")
    assert "is not the split the current DATASET.IMAGE_FOLDER settings make" in \
        capsys.readouterr().out


def _truncated_jpeg(png, jpg):
    from PIL import Image

    Image.open(png).convert("RGB").save(jpg, quality=95)
    with open(jpg, "rb") as f:
        data = f.read()
    with open(jpg, "wb") as f:
        f.write(data[:len(data) // 2])


def test_unreadable_files_are_all_listed_before_the_split_is_written(tmp_path):
    folder = str(tmp_path / "bad_files")
    written = write_image_folder(folder, n_classes=4, n_per_class=8)
    _truncated_jpeg(written["red_circle"][0], os.path.join(folder, "red_circle", "cut.jpg"))
    open(os.path.join(folder, "green_square", "empty.png"), "w").close()
    with open(os.path.join(folder, "blue_triangle", "notes.jpg"), "w") as f:
        f.write("not a picture")
    with pytest.raises(UserInputError) as err:
        read(folder)
    message = str(err.value)
    assert message.startswith("ImageFolder {}: 3 of the 35 images cannot be read: empty (0 "
                              "bytes): green_square/empty.png; not an image PIL can identify: "
                              "blue_triangle/notes.jpg; truncated or corrupt: red_circle/cut.jpg "
                              "(".format(folder))
    assert "move them out of the folder" in message and "\n" not in message
    assert "no split was written yet, so the next run writes {}".format(split_file(folder)) \
        in message
    assert not os.path.exists(split_file(folder))
    # moved out: the split is written, and then the files are not checked again
    for name in ("red_circle/cut.jpg", "green_square/empty.png", "blue_triangle/notes.jpg"):
        os.rename(os.path.join(folder, name), str(tmp_path / os.path.basename(name)))
    read(folder)
    assert os.path.isfile(split_file(folder))
    with open(written["red_circle"][1], "wb") as f:
        f.write(b"broken after the split was written")
    assert read(folder).num_classes == 4


def test_unreadable_file_listed_in_a_csv(tmp_path):
    folder = str(tmp_path / "listed")
    written = write_image_folder(folder, n_classes=4, n_per_class=8, layout="csv")
    open(written["red_circle"][2], "w").close()
    with pytest.raises(UserInputError) as err:
        read(folder)
    assert ("1 of the 32 images cannot be read: empty (0 bytes): {}; drop their rows from {} "
            .format(os.path.relpath(written["red_circle"][2], folder),
                    os.path.join(folder, "labels.csv"))) in str(err.value)


def test_plugin_adds_the_image_folder_keys_to_a_host_config():
    import clipwb.plugin

    cfg = get_cfg_default()
    clipwb.plugin.extend_cfg(cfg)
    assert tuple(cfg.DATASET.IMAGE_FOLDER.SPLIT) == (0.5, 0.2)
    assert cfg.DATASET.IMAGE_FOLDER.CSV == ""


@pytest.mark.slow
def test_base2new_script_on_an_image_folder(tmp_path):
    """The issue's command, with the toy CLIP's config (1 epoch, 2 shots)."""
    folder = str(tmp_path / "my_photos")
    write_image_folder(folder, n_classes=6, n_per_class=10, domain="noisy")
    out = tmp_path / "output"
    env = subprocess_env(DATA=folder, OUTPUT=str(out), SHOTS="2",
                         CFG="configs/trainers/DiSa/toy.yaml", OPTS="OPTIM.MAX_EPOCH 1",
                         PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/disa/base2new.sh", "image_folder", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    acc = {}
    for phase in ("train_base", "test_new"):
        run_dir = out / "base2new" / phase / "image_folder" / "shots_2" / "DiSa" / "toy" / "seed1"
        acc[phase] = results.parse_accuracy(str(run_dir / "log.txt"))
        assert acc[phase] is not None, run_dir
    assert os.path.isfile(split_file(folder))
    assert "ImageFolder" in proc.stdout
    row = re.search(r"^image_folder\s+([\d.]+) ± [\d.]+\s+([\d.]+) ± [\d.]+", proc.stdout, re.M)
    assert row, proc.stdout[-2000:]
    assert float(row.group(1)) == pytest.approx(acc["train_base"], abs=0.01)
    assert float(row.group(2)) == pytest.approx(acc["test_new"], abs=0.01)
