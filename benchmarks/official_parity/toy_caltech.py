"""The toy world laid out as Caltech101, the dataset both sides read.

One domain of the toy world (clipwb/toyworld/) is written as CoOp's Caltech101
layout: ``<root>/caltech-101/101_ObjectCategories/<class>/<image>.jpg`` and
``<root>/caltech-101/split_zhou_Caltech101.json`` (paths relative to the image
folder, as CoOp's split files). The official code and ours each get a root of
their own (the few-shot caches they write are pickles of their own ``Datum``
classes), with the same images (hard links where the file system allows).
"""
import json
import os
import shutil

from clipwb.toyworld import writer

IMAGE_DIR = os.path.join("caltech-101", "101_ObjectCategories")
SPLIT_FILE = os.path.join("caltech-101", "split_zhou_Caltech101.json")


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_toy_caltech(root, domain="noisy", toy_root=None):
    """Write ``root`` (the DATA folder of one side) and return it.

    ``toy_root``: where the toy world itself is (written there once if absent;
    default ``<root>/../toy_world``). An existing ``root`` is left as it is.
    """
    root = os.path.abspath(root)
    if os.path.isfile(os.path.join(root, SPLIT_FILE)):
        return root
    toy_root = toy_root or os.path.join(os.path.dirname(root), "toy_world")
    toy = writer.ensure_toy_dataset(toy_root)
    with open(os.path.join(toy, writer.SPLIT_FILE)) as f:
        split = json.load(f)
    out = {}
    for name in ("train", "val", "test"):
        entries = []
        for relpath, label, classname in split[name]:
            parts = relpath.split("/")
            if parts[0] != domain:
                continue
            rel = "/".join(parts[1:])
            dst = os.path.join(root, IMAGE_DIR, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.exists(dst):
                _link(os.path.join(toy, writer.IMAGE_DIR, relpath), dst)
            entries.append([rel, label, classname])
        out[name] = entries
    with open(os.path.join(root, SPLIT_FILE), "w") as f:
        json.dump(out, f, indent=1)
    return root
