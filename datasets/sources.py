"""Where a dataset lives under ``DATA``, what to say when it is not there, and
the opt-in Google-Drive download of the small files (split files, class names).

Nothing is downloaded unless the environment variable ``DATA_DOWNLOAD=1`` is
set; otherwise a missing file or folder raises :class:`MissingFileError` with
the exact path, the expected layout, the ``DATA`` root and where to get it.
"""
import json
import os

from clipwb.errors import MissingFileError

DOWNLOAD_ENV = "DATA_DOWNLOAD"
DRIVE_VIEW_URL = "https://drive.google.com/file/d/{}/view"
DRIVE_FETCH_URL = "https://drive.google.com/uc?id={}"


def data_root(cfg):
    """The absolute ``DATA`` folder: ``DATASET.ROOT`` (``--root``), else ``$DATA``, else ``./data``."""
    root = cfg.DATASET.ROOT or os.environ.get("DATA") or "./data"
    return os.path.abspath(os.path.expanduser(root))


#: set by the run scripts (scripts/common.sh) for the train.py they run
SCRIPT_ENV = "CLIPWB_SCRIPT"


def root_hint():
    """How the user sets the DATA folder: the scripts take ``DATA``, train.py
    ``--root``."""
    if os.environ.get(SCRIPT_ENV):
        return "set with DATA=/path/to/data before the script"
    return "set with --root or DATASET.ROOT"


def download_enabled():
    """True when the user opted in to downloads with ``DATA_DOWNLOAD=1``."""
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def how_to_get(dataset):
    """One sentence per source: the dataset's site and the Drive files it needs."""
    parts = []
    if dataset.source:
        parts.append("Get the images from {}.".format(dataset.source))
    for fname, file_id in sorted(dataset.drive_files.items()):
        parts.append("{} is at {} (or set {}=1 to let gdown fetch it).".format(
            fname, DRIVE_VIEW_URL.format(file_id), DOWNLOAD_ENV))
    return " ".join(parts)


def expected_layout(dataset):
    """The dataset's layout as ``DATA/<folder>/<entry>`` paths, on one line."""
    folder = type(dataset).dataset_dir
    return ", ".join("DATA/{}/{}".format(folder, entry) for entry in dataset.layout)


def missing_error(dataset, path, what):
    """A :class:`MissingFileError` naming ``path`` and saying how to provide it."""
    return MissingFileError(
        "{name}: {what} not found: {path}. Expected layout (DATA = {root}, {set}): "
        "{layout}. {how}".format(
            name=type(dataset).__name__, what=what, path=path, set=root_hint(),
            layout=expected_layout(dataset), root=dataset.root,
            how=how_to_get(dataset)).strip())


def require_dir(dataset, path, what):
    """Return ``path`` if it is a folder, else raise the dataset's clear error."""
    if not os.path.isdir(path):
        raise missing_error(dataset, path, what)
    return path


def require_file(dataset, relname, what):
    """Return ``<dataset_dir>/<relname>``; fetch it first if it is missing, a Drive
    id is known and downloads are enabled; otherwise raise the clear error."""
    path = os.path.join(dataset.dataset_dir, relname)
    if os.path.isfile(path):
        return path
    file_id = dataset.drive_files.get(relname)
    if file_id is None or not download_enabled():
        raise missing_error(dataset, path, what)
    fetch_drive_file(file_id, path)
    return path


def fetch_drive_file(file_id, dst):
    """Download a public Google-Drive file to ``dst`` (temp name, then rename).

    A failed or empty download leaves nothing behind and raises MissingFileError.
    """
    import gdown  # imported here: only opt-in downloads need it

    tmp = os.path.join(os.path.dirname(dst), ".{}.{}.part".format(os.path.basename(dst), os.getpid()))
    url = DRIVE_FETCH_URL.format(file_id)
    print("Downloading {} from {}".format(dst, url))
    try:
        gdown.download(url, tmp, quiet=False)
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise OSError("nothing was downloaded")
        if dst.endswith(".json"):
            with open(tmp, "r") as f:
                json.load(f)  # an HTML error page instead of the file must not land
        os.replace(tmp, dst)
    except Exception as err:  # gdown raises many kinds; all mean "no file"
        if os.path.exists(tmp):
            os.remove(tmp)
        raise MissingFileError(
            "Could not download {} from {} ({}: {}). Download it by hand from {} and "
            "place it at {}.".format(os.path.basename(dst), url, type(err).__name__, err,
                                     DRIVE_VIEW_URL.format(file_id), dst)) from None
    return dst
