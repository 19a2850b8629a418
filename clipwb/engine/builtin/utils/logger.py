"""Tee standard output to a log file (Dassl's ``Logger`` / ``setup_logger``)."""
import os
import os.path as osp
import sys
import time

from .io import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """A stream that writes to the console stream and to ``fpath``."""

    def __init__(self, fpath=None):
        self.console = sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            self.file = open(fpath, "w")

    def write(self, msg):
        self.console.write(msg)
        if self.file is not None and not self.file.closed:
            self.file.write(msg)

    def flush(self):
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            try:
                os.fsync(self.file.fileno())
            except OSError:
                pass

    def isatty(self):
        return False

    def fileno(self):
        return self.console.fileno()

    @property
    def encoding(self):
        return getattr(self.console, "encoding", "utf-8")

    def close(self):
        """Close the log file (the console stream stays open)."""
        if self.file is not None and not self.file.closed:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def setup_logger(output=None):
    """Send everything printed from now on to the console and a log file.

    ``output`` is a folder (the file is ``output/log.txt``) or a path ending in
    ``.txt`` / ``.log``. An existing log file is never overwritten: the new
    file gets the suffix ``-%Y-%m-%d-%H-%M-%S`` as in Dassl.
    """
    if output is None:
        return None
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
        if osp.exists(fpath):  # a second run within the same second
            n = 1
            while osp.exists("{}-{}".format(fpath, n)):
                n += 1
            fpath = "{}-{}".format(fpath, n)
    sys.stdout = Logger(fpath)
    return fpath
