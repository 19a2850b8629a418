"""Write the toy dataset to disk in the CoOp layout (on first use).

Layout under ``<DATA>/toy_shapes/``::

    images/<domain>/<class_folder>/<split>_<index>.jpg
    split_zhou_ToyShapes.json   {"train"|"val"|"test": [[relpath, label, classname], ...]}
    toyworld.json               what was generated (seed, size, counts); written last

Paths in the split file are relative to ``images/`` and start with the domain
(``plain/red_circle/train_000.jpg``), so one split file serves every domain.
The folder is built in a temporary sibling and renamed into place, so it is
either complete or absent; an existing folder is never overwritten.

Command line: ``python -m clipwb.toyworld.writer --root DATA``.
"""
import argparse
import json
import os
import shutil
import tempfile

from clipwb.errors import MissingFileError, UserInputError

from .render import CLASSNAMES, DOMAINS, NUM_CLASSES, class_folder, render

DATASET_DIR = "toy_shapes"
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_ToyShapes.json"
MANIFEST_FILE = "toyworld.json"
FORMAT_VERSION = 1
JPEG_SETTINGS = dict(format="JPEG", quality=95, subsampling=0, optimize=False)

SPLIT_ORDER = ("train", "val", "test")  # the order of the index space of a class

DEFAULTS = dict(seed=0, size=32, n_train=16, n_val=4, n_test=20)


def dataset_folder(root):
    """``<root>/toy_shapes`` with ``~`` expanded."""
    return os.path.join(os.path.abspath(os.path.expanduser(root)), DATASET_DIR)


def _write_images(image_dir, seed, size, counts, domains):
    split = {"train": [], "val": [], "test": []}
    for domain in domains:
        for label in range(NUM_CLASSES):
            folder = os.path.join(domain, class_folder(label))
            os.makedirs(os.path.join(image_dir, folder))
            index = 0  # one index space per (class, domain): splits never share an image
            for name in SPLIT_ORDER:
                for k in range(counts[name]):
                    rel = "{}/{}_{:03d}.jpg".format(folder, name, k)
                    img = render(label, domain, index, seed, size)
                    img.save(os.path.join(image_dir, rel), **JPEG_SETTINGS)
                    split[name].append([rel, label, CLASSNAMES[label]])
                    index += 1
    return split


def write_toy_dataset(root, seed=0, size=32, n_train=16, n_val=4, n_test=20, domains=DOMAINS):
    """Generate ``<root>/toy_shapes`` and return its path; refuse if it exists.

    ``n_train`` / ``n_val`` / ``n_test`` are images per class and domain.
    """
    folder = dataset_folder(root)
    if os.path.lexists(folder):
        raise UserInputError(
            "{} already exists; the toy dataset is never overwritten. "
            "Delete the folder to regenerate it.".format(folder))
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or not domains:
        raise UserInputError("toy domains {}: choose from {}".format(list(domains), ", ".join(DOMAINS)))
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    if min(counts.values()) < 1:
        raise UserInputError("toy dataset sizes must be >= 1 per class, got {}".format(counts))

    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".{}.tmp-".format(DATASET_DIR), dir=parent)
    except OSError as err:
        raise _unwritable(parent, err) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; give it normal permissions
    try:
        split = _write_images(os.path.join(tmp, IMAGE_DIR), seed, size, counts, domains)
        with open(os.path.join(tmp, SPLIT_FILE), "w") as f:
            json.dump(split, f, indent=1)
        manifest = dict(version=FORMAT_VERSION, seed=int(seed), size=int(size), counts=counts,
                        domains=list(domains), classnames=list(CLASSNAMES))
        with open(os.path.join(tmp, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=1)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.isdir(folder):
                raise
            # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
            check_toy_dataset(folder)
    except UserInputError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as err:  # the DATA folder cannot take it (read-only, full, ...)
        shutil.rmtree(tmp, ignore_errors=True)
        raise _unwritable(parent, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _unwritable(root, err):
    """The sentence for a DATA folder ``root`` the toy dataset cannot be written into."""
    why = err.strerror or str(err)
    if err.filename and os.path.abspath(err.filename) != root:
        why = "{}: {}".format(why, err.filename)
    return UserInputError(
        "Cannot write the toy dataset into the DATA folder {} ({}). Set DATA (the scripts) or "
        "--root (train.py) to a folder you can write to.".format(root, why))


def _corrupt(folder, why):
    return UserInputError(
        "toy dataset folder {} is incomplete or corrupt ({}). "
        "Delete the folder; it is regenerated on the next run.".format(folder, why))


def check_toy_dataset(folder):
    """Validate a written toy dataset folder; return its manifest dict."""
    if not os.path.isdir(folder):
        raise MissingFileError("toy dataset folder {} does not exist".format(folder))
    try:
        with open(os.path.join(folder, MANIFEST_FILE)) as f:
            manifest = json.load(f)
        with open(os.path.join(folder, SPLIT_FILE)) as f:
            split = json.load(f)
    except FileNotFoundError as err:
        raise _corrupt(folder, "missing {}".format(os.path.basename(err.filename))) from None
    except (ValueError, OSError) as err:
        raise _corrupt(folder, "unreadable json: {}".format(err)) from None
    if manifest.get("version") != FORMAT_VERSION or manifest.get("classnames") != list(CLASSNAMES):
        raise _corrupt(folder, "written by another version of toyworld")
    if not all(isinstance(split.get(k), list) and split[k] for k in ("train", "val", "test")):
        raise _corrupt(folder, "{} lacks train/val/test lists".format(SPLIT_FILE))
    image_dir = os.path.join(folder, IMAGE_DIR)
    for name in ("train", "val", "test"):
        for item in split[name]:
            path = os.path.join(image_dir, item[0])
            if not os.path.isfile(path) or os.path.getsize(path) == 0:
                raise _corrupt(folder, "missing or empty image {}".format(item[0]))
    return manifest


def render_args(impath):
    """``(label, domain, index, seed, size)`` that :func:`render` drew the toy
    dataset file ``impath`` from (``.../toy_shapes/images/<domain>/<class>/
    <split>_<k>.jpg``; index = the counts of the splits before ``split`` + k,
    seed and counts from the folder's manifest), or None for any other file."""
    parts = os.path.abspath(impath).split(os.sep)
    if len(parts) < 5 or parts[-4] != IMAGE_DIR:
        return None
    domain, folder, name = parts[-3], parts[-2], os.path.splitext(parts[-1])[0]
    split, _, k = name.rpartition("_")
    labels = [label for label in range(NUM_CLASSES) if class_folder(label) == folder]
    manifest_path = os.path.join(os.sep.join(parts[:-4]), MANIFEST_FILE)
    if domain not in DOMAINS or not labels or split not in SPLIT_ORDER or not k.isdigit() \
            or not os.path.isfile(manifest_path):
        return None
    with open(manifest_path) as f:
        manifest = json.load(f)
    counts = manifest["counts"]
    index = sum(counts[s] for s in SPLIT_ORDER[:SPLIT_ORDER.index(split)]) + int(k)
    return labels[0], domain, index, manifest["seed"], manifest["size"]


def ensure_toy_dataset(root, **kwargs):
    """Return ``<root>/toy_shapes``, writing it first if absent (validated if present)."""
    folder = dataset_folder(root)
    if os.path.lexists(folder):
        check_toy_dataset(folder)
        return folder
    params = dict(DEFAULTS, **kwargs)
    print("Writing the toy dataset to {} (once)".format(folder))
    return write_toy_dataset(root, **params)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("DATA", "./data"), help="DATA folder")
    for key, value in DEFAULTS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=value)
    args = parser.parse_args(argv)
    params = {k: getattr(args, k) for k in DEFAULTS}
    try:
        print(write_toy_dataset(args.root, **params))
    except UserInputError as err:
        raise SystemExit("error: {}".format(err))


if __name__ == "__main__":
    main()
