"""ImageFolder: your own images, one sub-folder per class, with no code.

``DATASET.NAME ImageFolder`` (``configs/datasets/image_folder.yaml``) reads the
folder ``DATASET.ROOT`` (``--root``; the scripts' ``DATA``) in one of three forms:

- ``<folder>/<class>/<image>``: every class folder is split once into
  train / val / test (``DATASET.IMAGE_FOLDER.SPLIT``, default 50 / 20 / 30 %
  of each class, with the fixed ``SPLIT_SEED``);
- ``<folder>/{train,val,test}/<class>/<image>``: the given split (without
  ``val/``, ``SPLIT[1]`` of each class of ``train/`` becomes val);
- ``<folder>/<file>.csv`` of ``path,label`` rows (``DATASET.IMAGE_FOLDER.CSV``;
  without it, the folder's only top-level CSV), paths relative to the folder
  (images anywhere inside it), split as the first form.

Class names are the folder names (or CSV labels) with underscores as spaces,
or the names a ``classnames.txt`` gives (``<folder or label> <class name>``
per line). Before the split is written, every file is opened and read through
once (:mod:`.image_check`): all unreadable ones (truncated, empty, not an
image) are listed in one error. The split is written once to
``<folder>/split_<folder name>.json`` in CoOp's format and never overwritten;
from then on the reader checks the folder against it and, when images were
added, removed or relabelled, stops listing them and says that a new split
(not comparable with the old one) needs the file deleted. Then the pipeline
of every CoOp dataset: the few-shot cache in ``<folder>/split_fewshot/``, the
base / new classes, the evaluation.

Which files count: images by extension (``splits.IMAGE_EXTENSIONS``) inside
the class folders (sub-folders included). Hidden files, ``Thumbs.db`` and
``desktop.ini`` are skipped; any other file in a class folder is an error.
Other top-level files (``classnames.txt``, the split file, a README) are not
images of a class and are left alone, except an image, which must be in a
class folder.
"""
import csv
import os
import random
import time

from clipwb.engine import CfgNode, Datum, DatasetBase
from clipwb.errors import ConfigError, UserInputError

from .image_check import describe, unreadable
from .sources import data_root, root_hint
from .splits import (IMAGE_EXTENSIONS, check_subsample, load_fewshot, read_split,
                     save_split_once, split_entries, split_pools, subsample_classes)

SPLIT_FOLDERS = ("train", "val", "test")
FEWSHOT_DIR = "split_fewshot"
CLASSNAMES_FILE = "classnames.txt"
SKIPPED_FILES = ("thumbs.db", "desktop.ini")


def extend_cfg(cfg):
    """``DATASET.IMAGE_FOLDER``: SPLIT (train, val fractions; test = the rest),
    SPLIT_SEED, CSV (a ``path,label`` file in the folder; "" = none or the only one)."""
    if "IMAGE_FOLDER" not in cfg.DATASET:
        node = CfgNode()
        node.SPLIT = (0.5, 0.2)
        node.SPLIT_SEED = 1
        node.CSV = ""
        cfg.DATASET.IMAGE_FOLDER = node
    return cfg


def _options(cfg):
    node = cfg.DATASET.get("IMAGE_FOLDER", None) or {}
    split = tuple(node.get("SPLIT", (0.5, 0.2)))
    if (len(split) != 2 or any(not isinstance(f, (int, float)) for f in split)
            or min(split) <= 0 or sum(split) >= 1):
        raise ConfigError(
            "DATASET.IMAGE_FOLDER.SPLIT = {} is not valid: give the train and val fractions "
            "of each class, both above 0 and summing to less than 1 (the rest is test), e.g. "
            "DATASET.IMAGE_FOLDER.SPLIT \"(0.5, 0.2)\".".format(list(split)))
    return split, int(node.get("SPLIT_SEED", 1)), node.get("CSV", "") or ""


def _bad(folder, message):
    return UserInputError("ImageFolder {}: {}".format(folder, message))


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _skipped(name):
    return name.startswith(".") or name.lower() in SKIPPED_FILES


def _subfolders(folder):
    return sorted(f for f in os.listdir(folder)
                  if not f.startswith(".") and f != FEWSHOT_DIR
                  and os.path.isdir(os.path.join(folder, f)))


def _class_images(root, class_dir):
    """Paths of every image under ``class_dir`` (sorted); any other file is an error."""
    images = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _skipped(name):
                continue
            path = os.path.join(dirpath, name)
            if not _is_image(name):
                hint = (" (DATA seems to be a folder of CoOp datasets: point it at your image "
                        "folder)" if name.startswith("split_") else "")
                raise _bad(root, "{} is not an image (the class folders may hold only {} files; "
                                 "hidden files, Thumbs.db and desktop.ini are skipped): move it "
                                 "out of the class folder{}.".format(
                                     path, "/".join(e[1:] for e in IMAGE_EXTENSIONS), hint))
            images.append(path)
    if not images:
        raise _bad(root, "the class folder {} holds no image; add images or remove the "
                         "folder.".format(class_dir))
    return images


def _read_classnames(root):
    """``{folder or label: class name}`` from ``classnames.txt`` (empty if absent)."""
    path = os.path.join(root, CLASSNAMES_FILE)
    if not os.path.isfile(path):
        return {}
    names = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, name = line.partition("\t") if "\t" in line else line.partition(" ")
            if not name.strip():
                raise _bad(root, "{} line {} ({!r}) is not '<folder> <class name>'; write "
                                 "the folder (or CSV label), a space or tab, then the name."
                                 .format(path, number, line))
            names[key.strip()] = name.strip()
    return names


def _check_classnames(root, names, keys):
    unknown = sorted(set(names) - set(keys))
    if unknown:
        raise _bad(root, "{} names {}, which {} no class folder (or CSV label); the classes "
                         "are {}.".format(os.path.join(root, CLASSNAMES_FILE), unknown,
                                          "is" if len(unknown) == 1 else "are", sorted(keys)))


def _sort_keys(keys):
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    return sorted(keys)


def _class_table(root, keys):
    """``[(key, class name)]`` in label order, checking the classes make a task."""
    keys = _sort_keys(keys)
    if len(keys) < 2:
        raise _bad(root, "found {} class{} ({}); a classification task needs at least two "
                         "class folders, one per class.".format(
                             len(keys), "" if len(keys) == 1 else "es", keys or "none"))
    given = _read_classnames(root)
    _check_classnames(root, given, keys)
    if all(k.isdigit() for k in keys) and not given:
        raise _bad(root, "the labels are numbers ({}, ...); CLIP needs names: add {} with "
                         "one '<label> <class name>' line per label.".format(
                             ", ".join(keys[:3]), os.path.join(root, CLASSNAMES_FILE)))
    table = [(k, given.get(k, k.replace("_", " ").strip())) for k in keys]
    seen = {}
    for key, name in table:
        if name.lower() in seen:
            raise _bad(root, "the classes {!r} and {!r} both get the class name {!r}; rename a "
                             "folder or give distinct names in {}.".format(
                                 seen[name.lower()], key, name, CLASSNAMES_FILE))
        seen[name.lower()] = key
    return table


def _datums(table, paths_of):
    return [Datum(impath=path, label=label, classname=name)
            for label, (key, name) in enumerate(table) for path in paths_of[key]]


def _from_class_folders(root, base):
    """``{class key: [paths]}`` of ``base``'s class folders; top-level images are errors."""
    for name in sorted(os.listdir(base)):
        if _is_image(name) and os.path.isfile(os.path.join(base, name)):
            raise _bad(root, "{} is not in a class folder; put every image in the folder of "
                             "its class ({}/<class>/<image>).".format(os.path.join(base, name),
                                                                       base))
    return {c: _class_images(root, os.path.join(base, c)) for c in _subfolders(base)}


def _csv_path(root, csv_name):
    if csv_name:
        path = csv_name if os.path.isabs(csv_name) else os.path.join(root, csv_name)
        if not os.path.isfile(path):
            raise _bad(root, "DATASET.IMAGE_FOLDER.CSV {} is not a file; give a path,label CSV "
                             "in the folder.".format(path))
        return path
    found = sorted(f for f in os.listdir(root) if f.lower().endswith(".csv"))
    return os.path.join(root, found[0]) if len(found) == 1 else None


def _from_csv(root, path):
    """``{label: [paths]}`` from a ``path,label`` CSV (an optional header row)."""
    paths_of, seen = {}, set()
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise _bad(root, "{} line {} ({}) is not 'path,label'.".format(
                    path, number, ",".join(row)))
            rel, label = row[0].strip(), row[1].strip()
            image = os.path.normpath(os.path.join(root, rel))
            where = "{} line {}".format(path, number)
            if os.path.relpath(image, root).startswith(os.pardir):
                raise _bad(root, "{} lists {}, which is outside the folder; the CSV's paths "
                                 "must be inside it.".format(where, rel))
            if not os.path.isfile(image):
                raise _bad(root, "{} lists {}, which does not exist.".format(where, image))
            if not _is_image(image):
                raise _bad(root, "{} lists {}, which is not an image ({} files).".format(
                    where, image, "/".join(e[1:] for e in IMAGE_EXTENSIONS)))
            if image in seen:
                raise _bad(root, "{} lists {} a second time; list each image once.".format(
                    where, rel))
            seen.add(image)
            paths_of.setdefault(label, []).append(image)
    if not paths_of:
        raise _bad(root, "{} lists no image; write one 'path,label' row per image.".format(path))
    return paths_of


def _min_images(fractions, parts):
    """The fewest images of a class that leave every named part non-empty."""
    for n in range(1, 1000):
        sizes = [int(round(n * f)) for f in fractions]
        sizes.append(n - sum(sizes))
        if all(size >= 1 for size, name in zip(sizes, parts) if name):
            return n
    return 1000


def _split(root, items, fractions, rng, parts=SPLIT_FOLDERS):
    """:func:`split_pools`, with the class-too-small error (``parts`` names the
    three parts; a part named None may be empty)."""
    out = split_pools(items, fractions, rng)
    counts = {}
    for item in items:
        counts[item.classname] = counts.get(item.classname, 0) + 1
    for part, name in zip(out, parts):
        missing = sorted(set(counts) - {i.classname for i in part}) if name else []
        if missing:
            shares = "/".join(str(int(round(100 * f))) for f in list(fractions)
                              + [1 - sum(fractions)] if f > 1e-9)
            raise _bad(root, "class {!r} has {} image(s), too few for a {} {} split (it needs "
                             "at least {}); add images or set DATASET.IMAGE_FOLDER.SPLIT."
                             .format(missing[0], counts[missing[0]], shares,
                                     "/".join(n for n in parts if n),
                                     _min_images(fractions, parts)))
    return out


def _is_split_layout(root, subs):
    """``train/`` and ``test/`` (and maybe ``val/``) of class folders, nothing else."""
    return ("train" in subs and "test" in subs and set(subs) <= set(SPLIT_FOLDERS)
            and bool(_subfolders(os.path.join(root, "train"))))


def scan(root, fractions, split_seed, csv_name=""):
    """``(train, val, test)`` as the folder's content and the settings give them now."""
    rng = random.Random(split_seed)
    csv_file = _csv_path(root, csv_name)
    if csv_file is not None:
        paths_of = _from_csv(root, csv_file)
        return _split(root, _datums(_class_table(root, list(paths_of)), paths_of), fractions, rng)
    subs = _subfolders(root)
    if not _is_split_layout(root, subs):
        paths_of = _from_class_folders(root, root)
        return _split(root, _datums(_class_table(root, list(paths_of)), paths_of), fractions, rng)
    given = {s: _from_class_folders(root, os.path.join(root, s)) for s in subs}
    for part in subs:
        if set(given[part]) != set(given["train"]):
            raise _bad(root, "{}/ and train/ have other class folders ({}); give every split "
                             "the same classes.".format(
                                 part, ", ".join(sorted(set(given["train"]) ^ set(given[part])))))
    table = _class_table(root, list(given["train"]))
    split = {s: _datums(table, given[s]) for s in subs}
    if "val" in split:
        return split["train"], split["val"], split["test"]
    p_val = fractions[1]
    train, val, _ = _split(root, split["train"], (1 - p_val, p_val), rng, ("train", "val", None))
    return train, val, split["test"]


def _entries(root, items):
    return {(os.path.relpath(i.impath, root).replace(os.sep, "/"), i.label, i.classname)
            for i in items}


def _some(paths, what, shown=5):
    """``"12 <what> (a, b, c, d, e and 7 more)"`` of the sorted ``paths``."""
    paths = sorted(paths)
    more = " and {} more".format(len(paths) - shown) if len(paths) > shown else ""
    listed = " ({}{})".format(", ".join(paths[:shown]), more) if paths else ""
    return "{} {}{}".format(len(paths), what, listed)


def check_split(root, split_path, fresh):
    """Stop if the folder changed since ``split_path`` was written, listing the
    images added, removed or relabelled; a note if the current settings would
    split it otherwise (the file is used as it is)."""
    stored = [{(os.path.normpath(rel).replace(os.sep, "/"), label, name)
               for rel, label, name in part} for part in split_entries(split_path)]
    fresh = [_entries(root, part) for part in fresh]
    now, then = set().union(*fresh), set().union(*stored)
    if now != then:
        now_paths, then_paths = {e[0] for e in now}, {e[0] for e in then}
        changes = [_some(now_paths - then_paths, "image(s) added"),
                   _some(then_paths - now_paths, "removed")]
        relabelled = {e[0] for e in now - then} & then_paths
        if relabelled:
            changes.append(_some(relabelled, "with another label or class name"))
        raise _bad(root, "the folder changed since {} was written: {}; deleting or adding "
                         "images makes a new split, so either put the folder back as it was "
                         "to keep this split, or delete {} and {} to have the next run write a "
                         "new split and new few-shot draws (results with the new split are "
                         "not comparable with those of the old one).".format(
                             split_path, ", ".join(changes), split_path,
                             os.path.join(root, FEWSHOT_DIR)))
    if stored != fresh:
        print("Note: {} is not the split the current DATASET.IMAGE_FOLDER settings make (edited, "
              "or written with other ones); it is used as it is (delete it to make a new one)."
              .format(split_path))


def check_images(root, items, split_path, csv_file=None):
    """Stop, listing every file of ``items`` that does not read as an image
    (:mod:`.image_check`); run once, before ``split_path`` is written."""
    paths = [item.impath for item in items]
    started = time.time()
    bad = unreadable(paths)
    print("Checked that the {} images of {} read ({:.1f} s; once, before the split is "
          "written)".format(len(paths), root, time.time() - started))
    if bad:
        fix = ("drop their rows from {}".format(csv_file) if csv_file
               else "move them out of the folder")
        raise _bad(root, "{} of the {} images cannot be read: {}; {} (or replace them with "
                         "readable copies) and run again: no split was written yet, so the "
                         "next run writes {} from the images then listed.".format(
                             len(bad), len(paths), describe(root, bad), fix, split_path))


def check_base_new(root, train, subsample):
    n = len({item.label for item in train})
    if subsample != "all" and n < 4:
        raise _bad(root, "{} classes are too few for base-to-new (DATASET.SUBSAMPLE_CLASSES {}): "
                         "each half needs at least two; use four or more classes, or "
                         "DATASET.SUBSAMPLE_CLASSES all.".format(n, subsample))


class ImageFolder(DatasetBase):
    """A folder of class folders (or train/val/test folders, or a CSV); see the module."""

    dataset_dir = ""  # the folder is DATASET.ROOT itself

    def __init__(self, cfg):
        subsample = check_subsample(cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"))
        fractions, split_seed, csv_name = _options(cfg)
        root = data_root(cfg)
        if not os.path.isdir(root):
            raise UserInputError("ImageFolder: {} is not a folder ({}); give the folder that "
                                 "holds one sub-folder per class.".format(root, root_hint()))
        self.dataset_dir = self.image_dir = root
        name = os.path.basename(os.path.normpath(root)) or "images"
        self.split_path = os.path.join(root, "split_{}.json".format(name))

        fresh = scan(root, fractions, split_seed, csv_name)
        if os.path.isfile(self.split_path):
            check_split(root, self.split_path, fresh)
            train, val, test = read_split(self.split_path, root)
        else:
            train, val, test = fresh
            check_images(root, train + val + test, self.split_path, _csv_path(root, csv_name))
            save_split_once(train, val, test, self.split_path, root)
        check_base_new(root, train, subsample)
        train, val = load_fewshot(self, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED, root)
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)
