"""The CoOp split conventions, in one place for every dataset.

- split files ``split_zhou_<Name>.json``: ``{"train"|"val"|"test": [[relative_impath,
  label, classname], ...]}``, paths relative to the image folder;
- new splits: ``split_trainval`` (20% of each class to val) and
  ``read_and_split_data`` (folder per class: 50% train / 20% val / 30% test);
- few-shot subsets cached in ``<dataset_dir>/split_fewshot/shot_{K}-seed_{SEED}.pkl``
  (K per class for train, min(K, 4) for val) so every method sees the same shots;
- ``subsample_classes``: the base (first half of the sorted labels) / new (the
  rest) protocol of CoCoOp, relabelled to 0..
"""
import json
import math
import os
import pickle
import random
from collections import OrderedDict, defaultdict

from clipwb.engine import Datum, listdir_nohidden, write_json
from clipwb.errors import ConfigError, MissingFileError, UserInputError

SUBSAMPLE_CHOICES = ("all", "base", "new")
SPLIT_KEYS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def make_datum(impath, label, classname, domain=0, listed_in=None):
    """A Datum, with a clear error (naming the file that lists it) if the image is missing."""
    if not os.path.isfile(impath):
        where = " (listed in {})".format(listed_in) if listed_in else ""
        raise MissingFileError(
            "Image not found: {}{}. The image folder is incomplete or does not match "
            "the split; re-extract the dataset's images.".format(impath, where))
    return Datum(impath=impath, label=int(label), domain=domain, classname=classname)


def list_images(folder):
    """Sorted image file names (by extension) in ``folder``, hidden files skipped."""
    return sorted(f for f in listdir_nohidden(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def list_subfolders(folder):
    """Sorted names of the non-hidden sub-folders of ``folder``."""
    return sorted(f for f in listdir_nohidden(folder) if os.path.isdir(os.path.join(folder, f)))


# ---------------------------------------------------------------- split files

def split_entries(filepath):
    """``(train, val, test)`` of a CoOp split file as ``[(relative_impath, label,
    classname), ...]`` lists, with a clear error if the file is unusable."""
    try:
        with open(filepath, "r") as f:
            split = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise UserInputError(
            "Split file {} is not valid JSON ({}). Delete it and download it again."
            .format(filepath, err)) from None
    if not isinstance(split, dict) or any(k not in split for k in SPLIT_KEYS):
        raise UserInputError(
            "Split file {} must be a JSON object with the keys {}; delete it and "
            "download it again.".format(filepath, list(SPLIT_KEYS)))
    out = []
    for key in SPLIT_KEYS:
        items = []
        for entry in split[key]:
            try:
                relpath, label, classname = entry
                items.append((relpath, int(label), classname))
            except (TypeError, ValueError):
                raise UserInputError(
                    "Split file {}: entry {!r} in '{}' is not [relative_impath, label, "
                    "classname]; delete the file and download it again."
                    .format(filepath, entry, key)) from None
        out.append(items)
    return tuple(out)


def read_split(filepath, path_prefix):
    """Read a CoOp split file; return ``(train, val, test)`` lists of Datum."""
    entries = split_entries(filepath)
    print("Reading split from {}".format(filepath))
    return tuple([make_datum(os.path.join(path_prefix, relpath), label, classname,
                             listed_in=filepath) for relpath, label, classname in items]
                 for items in entries)


def save_split(train, val, test, filepath, path_prefix, announce=True):
    """Write ``(train, val, test)`` as a CoOp split file, paths relative to ``path_prefix``."""
    prefix = os.path.abspath(path_prefix)

    def entries(items):
        rows = []
        for item in items:
            rel = os.path.relpath(os.path.abspath(item.impath), prefix)
            if rel.startswith(os.pardir):
                raise ValueError("{} is not under {}".format(item.impath, prefix))
            rows.append([rel.replace(os.sep, "/"), int(item.label), item.classname])
        return rows

    write_json({"train": entries(train), "val": entries(val), "test": entries(test)}, filepath)
    if announce:
        print("Saved split to {}".format(filepath))


def split_trainval(trainval, p_val=0.2):
    """Split a list of Datum into train / val, ``round(n * p_val)`` of each class to val.

    Each class's items are shuffled with the global ``random`` state (seeded by
    ``train.py``), as in CoOp.
    """
    by_label = defaultdict(list)
    for idx, item in enumerate(trainval):
        by_label[item.label].append(idx)
    print("Splitting trainval into {:.0%} train and {:.0%} val".format(1 - p_val, p_val))
    train, val = [], []
    for label, idxs in by_label.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise ValueError("Class {} has {} images: too few to hold out {:.0%} for val."
                             .format(label, len(idxs), p_val))
        random.shuffle(idxs)
        val.extend(trainval[i] for i in idxs[:n_val])
        train.extend(trainval[i] for i in idxs[n_val:])
    return train, val


def group_by_label(items):
    """``OrderedDict`` label -> items, labels sorted, items in input order."""
    groups = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return OrderedDict(sorted(groups.items()))


def split_pools(items, fractions, rng):
    """Split ``items`` per class into three parts ``(A, B, rest)`` with ``rng``.

    ``fractions = (a, b)``: ``round(n * a)`` images of a class go to A,
    ``round(n * b)`` to B and the rest to the third part (``a + b == 1``
    leaves it empty, as ImageNet-DG's 50/50 source split). GuiDG's pools
    (A, B, test) and the image-folder split (train, val, test) use it.
    """
    pool_a, pool_b, rest = [], [], []
    for group in group_by_label(items).values():
        group = list(group)
        rng.shuffle(group)
        n_a = int(round(len(group) * fractions[0]))
        n_b = min(int(round(len(group) * fractions[1])), len(group) - n_a)
        pool_a += group[:n_a]
        pool_b += group[n_a:n_a + n_b]
        rest += group[n_a + n_b:]
    return pool_a, pool_b, rest


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
    """Split a folder-per-class tree into train / val / test (the rest).

    Labels follow the sorted folder names minus ``ignored``; ``new_cnames`` maps a
    folder name to the class name to use (e.g. ``"Faces" -> "face"``).
    """
    new_cnames = new_cnames or {}
    categories = [c for c in list_subfolders(image_dir) if c not in ignored]
    print("Splitting into {:.0%} train, {:.0%} val, and {:.0%} test"
          .format(p_trn, p_val, 1 - p_trn - p_val))
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        folder = os.path.join(image_dir, category)
        images = [os.path.join(folder, f) for f in list_images(folder)]
        random.shuffle(images)
        n_train, n_val = round(len(images) * p_trn), round(len(images) * p_val)
        if n_train < 1 or n_val < 1 or len(images) - n_train - n_val < 1:
            raise ValueError("{} has {} images: too few for a train/val/test split."
                             .format(folder, len(images)))
        cname = new_cnames.get(category, category)
        for dst, chunk in ((train, images[:n_train]),
                           (val, images[n_train:n_train + n_val]),
                           (test, images[n_train + n_val:])):
            dst.extend(Datum(impath=p, label=label, classname=cname) for p in chunk)
    return train, val, test


# ------------------------------------------------------------- pickle caches

class _StoredDatum:
    """Stand-in for whichever ``Datum`` class pickled a cache (real Dassl's or ours)."""


class _CacheUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "Datum":
            return _StoredDatum
        return super().find_class(module, name)


def _stored_field(obj, name, default=None):
    state = vars(obj)
    return state.get("_" + name, state.get(name, default))


def _rebase(impath, dataset_dir):
    """``impath`` moved under ``dataset_dir`` (same path below the dataset folder), or None."""
    marker = os.sep + os.path.basename(os.path.normpath(dataset_dir)) + os.sep
    cut = impath.rfind(marker)
    if cut < 0:
        return None
    moved = os.path.join(dataset_dir, impath[cut + len(marker):])
    return moved if os.path.isfile(moved) else None


def read_datum_pickle(path, keys, dataset_dir=None):
    """Read a cache ``{key: [Datum, ...]}`` written by CoOp or by us.

    Caches hold absolute paths; if the dataset folder was moved (or the cache
    comes from another machine), paths are re-rooted under ``dataset_dir``.
    Unreadable content, a missing key or a vanished image gives one error that
    names the file and says to delete it (it is rebuilt on the next run).
    """
    def corrupt(reason):
        return UserInputError("Cache file {} is unusable ({}). Delete it; it is rebuilt "
                              "on the next run.".format(path, reason))

    try:
        with open(path, "rb") as f:
            data = _CacheUnpickler(f).load()
    except Exception as err:  # any unpickling failure means a corrupt file
        raise corrupt("{}: {}".format(type(err).__name__, err)) from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise corrupt("expected a dict with the keys {}".format(list(keys)))
    out = {}
    for key in keys:
        items = []
        for obj in data[key]:
            if not isinstance(obj, _StoredDatum):
                raise corrupt("'{}' holds a {}, not Datum objects".format(key, type(obj).__name__))
            impath = _stored_field(obj, "impath")
            if not isinstance(impath, str):
                raise corrupt("an image path is {!r}".format(impath))
            if not os.path.isfile(impath):
                moved = _rebase(impath, dataset_dir) if dataset_dir else None
                if moved is None:
                    raise corrupt("it lists {}, which does not exist".format(impath))
                impath = moved
            items.append(Datum(impath=impath, label=int(_stored_field(obj, "label", 0)),
                               domain=_stored_field(obj, "domain", 0),
                               classname=_stored_field(obj, "classname", "")))
        out[key] = items
    return out


def write_once(path, write, what="cache"):
    """Write ``path`` with ``write(tmp_path)`` unless it exists (never overwrite).

    Written to a temp name first and linked into place, so a reader never sees
    half a file and a file another run wrote meanwhile is kept. A read-only
    folder only prints a note naming the ``what``. True if this call wrote it.
    """
    if os.path.exists(path):
        return False
    tmp = "{}.{}.tmp".format(path, os.getpid())
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write(tmp)
        try:
            os.link(tmp, path)  # fails if another run wrote it meanwhile
        except FileExistsError:
            return False
        except OSError:  # file systems without hard links
            if os.path.exists(path):
                return False
            os.replace(tmp, path)
        return True
    except OSError as err:
        print("Note: could not write the {} {} ({}); continuing without it."
              .format(what, path, err))
        return False
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_pickle_once(path, data):
    """Write ``data`` to ``path`` unless it exists (never overwrite); see :func:`write_once`."""
    def write(tmp):
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)

    return write_once(path, write)


def save_split_once(train, val, test, path, path_prefix, what="split"):
    """:func:`save_split` to ``path`` unless it exists (never overwrite); see :func:`write_once`."""
    written = write_once(path, lambda tmp: save_split(train, val, test, tmp, path_prefix,
                                                      announce=False), what)
    if written:
        print("Saved {} to {}".format(what, path))
    return written


# ------------------------------------------------------------------ few-shot

def fewshot_cache_path(dataset_dir, num_shots, seed):
    """``<dataset_dir>/split_fewshot/shot_{K}-seed_{SEED}.pkl``, CoOp's file name."""
    return os.path.join(dataset_dir, "split_fewshot", "shot_{}-seed_{}.pkl".format(num_shots, seed))


def load_fewshot(dataset, train, val, num_shots, seed, dataset_dir):
    """K shots per class for ``train`` and min(K, 4) for ``val``, cached per (K, seed).

    Sampling is ``DatasetBase.generate_fewshot_dataset`` (train first, then val),
    so a seed gives the same shots as CoOp. ``val=None`` (ImageNet) caches only
    train, as CoOp does. An existing cache is read, never rewritten.
    """
    if num_shots < 1:
        return train, val
    path = fewshot_cache_path(dataset_dir, num_shots, seed)
    keys = ("train",) if val is None else ("train", "val")
    if os.path.exists(path):
        print("Loading preprocessed few-shot data from {}".format(path))
        data = read_datum_pickle(path, keys, dataset_dir)
        return data["train"], data.get("val", val)
    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    data = {"train": train}
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        data["val"] = val
    if write_pickle_once(path, data):
        print("Saving preprocessed few-shot data to {}".format(path))
    return train, val


# ------------------------------------------------------------------ base/new

def check_subsample(value):
    """Validate ``DATASET.SUBSAMPLE_CLASSES``; return it."""
    if value not in SUBSAMPLE_CHOICES:
        raise ConfigError(
            "DATASET.SUBSAMPLE_CLASSES = {!r} is not valid; use one of {} "
            "(e.g. DATASET.SUBSAMPLE_CLASSES base).".format(value, ", ".join(SUBSAMPLE_CHOICES)))
    return value


def subsample_classes(*splits, subsample="all"):
    """Keep the base or new half of the classes in every split, relabelled to 0..

    The labels of the first split are sorted; with n of them and m = ceil(n / 2),
    base = the first m labels and new = the rest (CoCoOp's base-to-new protocol).
    ``None`` splits stay ``None``; ``"all"`` returns the splits unchanged.
    """
    check_subsample(subsample)
    if subsample == "all":
        return splits
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabel = {old: new for new, old in enumerate(selected)}
    print("SUBSAMPLE {} CLASSES!".format(subsample.upper()))
    out = []
    for split in splits:
        if split is None:
            out.append(None)
            continue
        out.append([Datum(impath=item.impath, label=relabel[item.label], domain=item.domain,
                          classname=item.classname)
                    for item in split if item.label in relabel])
    return tuple(out)
