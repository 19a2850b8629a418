"""File helpers with Dassl's names: folders, JSON, directory listing, images."""
import errno
import json
import os
import os.path as osp
import warnings

from clipwb.errors import MissingFileError, UserInputError

from .image_modes import to_rgb

__all__ = ["mkdir_if_missing", "check_isfile", "read_json", "write_json",
           "listdir_nohidden", "read_image", "tolist_if_not"]


def mkdir_if_missing(dirname):
    """Create ``dirname`` (and its parents) if it does not exist."""
    if not dirname or osp.exists(dirname):
        return
    try:
        os.makedirs(dirname)
    except OSError as err:
        if err.errno != errno.EEXIST:
            raise


def check_isfile(fpath):
    """Return True if ``fpath`` is a file; warn (do not raise) otherwise."""
    if osp.isfile(fpath):
        return True
    warnings.warn('No file found at "{}"'.format(fpath))
    return False


def read_json(fpath):
    """Load a JSON file; a missing or malformed file gives a clear error."""
    if not osp.isfile(fpath):
        raise MissingFileError('JSON file not found: "{}"'.format(fpath))
    with open(fpath, "r") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise UserInputError(
                'JSON file "{}" is malformed ({}); fix or delete it so it is '
                "regenerated".format(fpath, err)) from None


def write_json(obj, fpath):
    """Write ``obj`` as indented JSON, creating the parent folder."""
    mkdir_if_missing(osp.dirname(fpath))
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def listdir_nohidden(path, sort=False):
    """Names in ``path`` that do not start with a dot (optionally sorted)."""
    if not osp.isdir(path):
        raise MissingFileError('Folder not found: "{}"'.format(path))
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    if sort:
        items.sort()
    return items


def read_image(path):
    """Open an image file as an 8-bit RGB ``PIL.Image``, whatever its mode
    (16-bit, float, palette, CMYK, alpha: :func:`.image_modes.to_rgb`).

    A missing or unreadable (corrupt, truncated, not an image) file raises an
    error naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    if not osp.isfile(path):
        raise MissingFileError(
            'Image not found: "{}". Check DATASET.ROOT and the dataset '
            "layout.".format(path))
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserInputError(
            'Cannot read image "{}" ({}); the file is corrupt or not an image: replace it '
            "with a readable copy (removing it changes the dataset, and a split written "
            "from it must then be rebuilt).".format(path, err)) from None


def tolist_if_not(x):
    """Wrap ``x`` in a list unless it already is one."""
    return x if isinstance(x, list) else [x]
