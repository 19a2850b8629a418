"""Every file of an image folder opens as an image: checked once, before its split is written.

A truncated JPEG, an empty PNG or a text file named ``.jpg`` would otherwise
be found only when a DataLoader reads it (after training, in the test of the
new classes, or never if it sits in val), one file per run. ``unreadable``
opens each file and reads it through: a PNG is verified (PIL checks the CRC of
every chunk up to IEND, no decompression), any other format is decoded, a JPEG
at 1/8 scale (``draft``: the whole stream is still parsed, so truncation is
found). Threads overlap the files (PIL releases the GIL while decoding).
"""
import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["unreadable", "describe"]

EMPTY = "empty (0 bytes)"
NOT_AN_IMAGE = "not an image PIL can identify"
CORRUPT = "truncated or corrupt"


def image_problem(path):
    """``None`` if ``path`` reads as an image, else ``(kind, detail)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return EMPTY, ""
        with Image.open(path) as img:
            if img.format == "PNG":
                img.verify()
            else:
                img.draft(None, (1, 1))
                img.load()
    except UnidentifiedImageError:
        return NOT_AN_IMAGE, ""
    except Exception as err:  # PIL raises OSError, SyntaxError, EOFError, struct.error ...
        return CORRUPT, str(err).rstrip(".") or type(err).__name__
    return None


def unreadable(paths):
    """``[(path, kind, detail)]`` of the files of ``paths`` that do not read as images."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(image_problem, paths))
    return [(path, kind, detail) for path, problem in zip(paths, problems) if problem
            for kind, detail in [problem]]


def describe(root, bad):
    """``bad`` (from :func:`unreadable`) grouped by kind, paths relative to ``root``."""
    groups = []
    for kind in (EMPTY, NOT_AN_IMAGE, CORRUPT):
        names = ["{}{}".format(os.path.relpath(path, root),
                               " ({})".format(detail) if detail else "")
                 for path, k, detail in bad if k == kind]
        if names:
            groups.append("{}: {}".format(kind, ", ".join(names)))
    return "; ".join(groups)
