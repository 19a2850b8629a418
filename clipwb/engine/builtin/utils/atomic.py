"""Files written whole or not at all: checkpoints, the ``checkpoint`` pointer
file and the run state.

Each is written to ``<path>.tmp`` beside its target, flushed and fsynced,
then moved over the target with ``os.replace`` (and the folder fsynced), so a
kill or a crash at any moment leaves either the old file or the new one,
never half a file. A write that fails removes its temporary file; one that
fails for want of space (``ENOSPC``, or ``EDQUOT`` for a quota: torch reports
it as a ``RuntimeError`` raised while handling the ``OSError``) becomes one
sentence, :class:`~clipwb.errors.DiskFullError`, naming the file.
"""
import contextlib
import errno
import io
import os
import os.path as osp
import shutil

import torch

from clipwb.errors import DiskFullError

__all__ = ["atomic_file", "save_atomically", "write_atomically", "copy_atomically",
           "WriteOnClose", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _is_no_space(err):
    """True when ``err`` or an exception it was raised from (cause / context)
    is an ``OSError`` for a full disk or an exceeded quota."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_message(path):
    """The sentence of a write of ``path`` that found no space."""
    return ('No space left on the device (disk full or quota reached) to write "{}": free '
            "some space and run the same command again, the run resumes from its last "
            "saved state.".format(path))


def _fsync_folder(folder):
    """Make a rename in ``folder`` durable (best effort: not every system can)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path, mode="wb"):
    """``open(path + ".tmp", mode)``; on leaving the block without an error
    the file replaces ``path``. On any error (Ctrl-C included) the temporary
    file is removed and ``path`` is left as it was."""
    tmp = path + TMP_SUFFIX
    f = None
    try:
        f = open(tmp, mode)
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as err:
        if f is not None:
            with contextlib.suppress(Exception):
                f.close()
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if _is_no_space(err):
            raise DiskFullError(disk_full_message(path)) from None
        raise
    _fsync_folder(osp.dirname(path))


def save_atomically(obj, path):
    """``torch.save(obj, path)`` through :func:`atomic_file`."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def write_atomically(path, text):
    """Write the string ``text`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path, "w") as f:
        f.write(text)


def copy_atomically(src, dst):
    """Copy the file ``src`` to ``dst`` through :func:`atomic_file`."""
    with open(src, "rb") as source, atomic_file(dst) as f:
        shutil.copyfileobj(source, f)


class WriteOnClose(io.StringIO):
    """A text file opened for writing whose content replaces ``path`` with
    :func:`write_atomically` when it is closed (an unclosed one writes
    nothing): ``open(path, "w")`` for code that writes, then closes."""

    def __init__(self, path):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            text = self.getvalue()
            super().close()
            write_atomically(self._path, text)
