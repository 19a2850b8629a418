"""Patches that let real Dassl 0.6.3 run on torch >= 2.6 and numpy >= 2.

Patches (a)-(c) and (e) are applied by ``clipwb/engine/__init__.py`` before
it imports Dassl's names, only when the backend is real Dassl, (a)-(c) each
only when the installed torch / numpy actually has the breakage; applying
twice changes nothing. They turn a crash (or a file half written) into
Dassl's own computation, so a host checkout's trainer that runs without them
gives the same numbers with them.

Patches (b), (c) and (e) change what a Dassl function *calls*, never the
name the function is bound to: a module global of the Dassl module (its
``torch``, ``np``, ``shutil``, ``open``) is replaced by a view of the same
module with a few names replaced, and the function stays the one object
every importer holds. A CoOp-family trainer does ``from dassl.utils import
load_checkpoint`` before the plugin is imported; its reference gets the fix
too.
Patch (d) changes Dassl's behaviour (its error messages), so it is applied
only by this repository's ``train.py`` (:func:`apply_usability`), never by
the plugin inside a host checkout.

(a) ``warmup_verbose`` -- ``dassl.optim.lr_scheduler._BaseWarmupScheduler``
    passes ``verbose`` positionally to torch's ``LRScheduler.__init__``, which
    no longer takes it (TypeError whenever ``OPTIM.WARMUP_EPOCH > 0``). The
    patched ``__init__`` keeps Dassl's signature and drops ``verbose``.
(b) ``checkpoint_weights_only`` -- ``torch.load`` defaults to
    ``weights_only=True``; Dassl's checkpoints hold optimizer / scheduler
    state (the warmup scheduler pickles its successor object), so
    ``dassl.utils.torchtools.load_checkpoint`` fails on resume and
    ``--eval-only``. Its ``torch.load(fpath, map_location=...)`` (the
    ``torch`` of torchtools' globals) becomes the built-in engine's
    ``load_checkpoint``: safe loading, with ``weights_only=False`` only for
    files in the layout the trainer writes. A call that names
    ``weights_only`` or a ``pickle_module`` goes to ``torch.load`` unchanged.
(c) ``numpy_int`` -- ``dassl.data.transforms.randaugment`` (SolarizeAdd) and
    ``.autoaugment`` (SubPolicy: imagenet/cifar10/svhn policies) use
    ``np.int``, removed in numpy 2. Those two modules get a view of numpy
    whose ``int`` is Python's ``int`` (numpy itself is not modified).
(d) ``read_image_errors`` -- Dassl's ``DatasetWrapper`` reads images with
    ``dassl.utils.read_image``, which lets PIL's error out (a traceback, from
    a DataLoader worker too) and clips 16-bit and float images to 0..255
    (``convert("RGB")``). ``dassl.data.data_manager`` gets the built-in
    ``read_image``: a corrupt or missing image raises a ``UserInputError``
    naming the file, and every mode is decoded by
    ``clipwb.engine.builtin.utils.image_modes.to_rgb``, the decoder of the
    built-in engine (the same pixels as Dassl's for every 8-bit mode, alpha
    dropped as Dassl does; 16-bit and float images scaled instead of clipped).
    Applied whatever the versions, by :func:`apply_usability` only: a host
    checkout's own ``train.py`` keeps Dassl's reader.
(e) ``atomic_checkpoints`` -- ``dassl.utils.torchtools.save_checkpoint``
    writes ``model.pth.tar-N`` in place, then the ``checkpoint`` pointer
    file, then copies ``model-best.pth.tar``: a kill or a full disk in
    between leaves half a file, or a folder without a pointer file that
    Dassl cannot resume from. In torchtools' globals, ``torch.save``,
    ``shutil.copy`` and ``open`` for writing text become the atomic writes
    of :mod:`clipwb.engine.builtin.utils.atomic` (temporary file, fsync,
    ``os.replace``; a full disk is one sentence naming the file); the files
    and their content are Dassl's. Applied whatever the versions.
"""
import builtins
import types

import numpy
import torch

__all__ = ["apply", "apply_usability", "needed_patches"]

_MARK = "_engine_compat_patched"


def _torch_version():
    parts = []
    for piece in torch.__version__.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def needed_patches():
    """Names of the patches the installed torch / numpy need."""
    import inspect
    from torch.optim.lr_scheduler import LRScheduler

    needed = []
    if "verbose" not in inspect.signature(LRScheduler.__init__).parameters:
        needed.append("warmup_verbose")
    if _torch_version() >= (2, 6):
        needed.append("checkpoint_weights_only")
    if not hasattr(numpy, "int"):
        needed.append("numpy_int")
    return needed



# ---- (a) warmup scheduler ------------------------------------------------
def _patch_warmup_verbose():
    from torch.optim.lr_scheduler import LRScheduler

    from dassl.optim import lr_scheduler as dassl_sched

    base = dassl_sched._BaseWarmupScheduler
    if getattr(base.__init__, _MARK, False):
        return False

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1,
                 verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        LRScheduler.__init__(self, optimizer, last_epoch)

    setattr(__init__, _MARK, True)
    base.__init__ = __init__
    return True


# ---- module views ---------------------------------------------------------
class _ModuleView(types.ModuleType):
    """A module as one Dassl module sees it: every name of ``base``, a few
    replaced (set as attributes of the view)."""

    def __init__(self, base):
        super().__init__(base.__name__)
        self.__dict__["_base"] = base
        setattr(self, _MARK, True)

    def __getattr__(self, name):
        return getattr(self.__dict__["_base"], name)


def _replace_in_view(module, global_name, **names):
    """Let ``module`` see its global module ``global_name`` through a
    :class:`_ModuleView` with ``names`` replaced; False if they already are."""
    view = getattr(module, global_name)
    if not getattr(view, _MARK, False):
        view = _ModuleView(view)
        setattr(module, global_name, view)
    if all(view.__dict__.get(key) is value for key, value in names.items()):
        return False
    for key, value in names.items():
        setattr(view, key, value)
    return True


# ---- (b) checkpoint loading ----------------------------------------------
def _safe_torch_load(f, map_location=None, **kwargs):
    """``torch.load`` as Dassl's ``load_checkpoint`` calls it (``map_location``
    alone): the built-in engine's safe ``load_checkpoint``, which picks the
    same device; any other call is ``torch.load``'s own."""
    from clipwb.engine.builtin.utils.torchtools import load_checkpoint as safe_load

    if kwargs:
        return torch.load(f, map_location=map_location, **kwargs)
    return safe_load(f)


def _patch_load_checkpoint():
    from dassl.utils import torchtools

    return _replace_in_view(torchtools, "torch", load=_safe_torch_load)


# ---- (c) np.int ----------------------------------------------------------
def _patch_numpy_int():
    import importlib

    changed = False
    for mod_name in ("dassl.data.transforms.randaugment",
                     "dassl.data.transforms.autoaugment"):
        module = importlib.import_module(mod_name)
        changed = _replace_in_view(module, "np", int=int) or changed
    return changed


# ---- (d) image read errors -----------------------------------------------
def _patch_read_image():
    from clipwb.engine.builtin.utils.io import read_image

    from dassl.data import data_manager

    if data_manager.read_image is read_image:
        return False
    data_manager.read_image = read_image
    return True


# ---- (e) atomic checkpoint files ------------------------------------------
def _open_writing_atomically(file, mode="r", *args, **kwargs):
    """``open`` as Dassl's torchtools sees it: a text file opened to be
    written (the ``checkpoint`` pointer) replaces its target when closed."""
    from clipwb.engine.builtin.utils.atomic import WriteOnClose

    if mode in ("w", "w+", "wt") and not args and not kwargs:
        return WriteOnClose(file)
    return builtins.open(file, mode, *args, **kwargs)


def _patch_atomic_checkpoints():
    from clipwb.engine.builtin.utils.atomic import copy_atomically, save_atomically

    from dassl.utils import torchtools

    changed = _replace_in_view(torchtools, "torch", save=save_atomically)
    changed = _replace_in_view(torchtools, "shutil", copy=copy_atomically) or changed
    if torchtools.__dict__.get("open") is not _open_writing_atomically:
        torchtools.open = _open_writing_atomically
        changed = True
    return changed


_PATCHERS = {
    "warmup_verbose": _patch_warmup_verbose,
    "checkpoint_weights_only": _patch_load_checkpoint,
    "numpy_int": _patch_numpy_int,
    "atomic_checkpoints": _patch_atomic_checkpoints,
}
#: the patches applied whatever the installed versions
_ALWAYS = ["atomic_checkpoints"]


def apply():
    """Apply every needed patch to the installed Dassl; return the names of
    the patches applied by this call (empty when already applied)."""
    import dassl.utils  # noqa: F401  (the patched modules must exist)

    applied = []
    for name in needed_patches() + _ALWAYS:
        if _PATCHERS[name]():
            applied.append(name)
    return applied


def apply_usability():
    """Apply (d), this repository's own change to Dassl's image reading;
    return ``["read_image_errors"]`` if this call applied it."""
    import dassl.utils  # noqa: F401

    return ["read_image_errors"] if _patch_read_image() else []
