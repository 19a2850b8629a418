"""``Datum``: one labelled image (Dassl's data instance)."""
import os.path as osp

from clipwb.errors import MissingFileError, UserInputError

__all__ = ["Datum"]


class Datum:
    """An image path with its class label, domain label and class name.

    The attribute names (``_impath``, ``_label``, ``_domain``, ``_classname``)
    match Dassl's so pickled few-shot caches hold the same state.
    """

    def __init__(self, impath="", label=0, domain=0, classname=""):
        if not isinstance(impath, str):
            raise UserInputError(
                "Datum(impath=...) must be a str, got {!r}".format(impath))
        if not osp.isfile(impath):
            raise MissingFileError(
                'Image not found: "{}". Check DATASET.ROOT and that the dataset '
                "folder is complete.".format(impath))
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def __repr__(self):
        return "Datum(impath={!r}, label={}, domain={}, classname={!r})".format(
            self._impath, self._label, self._domain, self._classname)
