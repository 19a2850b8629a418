"""Patches that let real Dassl 0.6.3 run on torch >= 2.6 and numpy >= 2.

Patches (a)-(c) are applied by ``clipwb/engine/__init__.py`` before it
imports Dassl's names, only when the backend is real Dassl, each only when the
installed torch / numpy actually has the breakage; applying twice changes
nothing. They turn a crash into Dassl's own computation, so a host
checkout's trainer that runs without them gives the same numbers with them.
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
    ``--eval-only``. It is replaced (everywhere Dassl bound it) by the
    built-in engine's ``load_checkpoint``: safe loading, with
    ``weights_only=False`` only for files in the layout the trainer writes.
(c) ``numpy_int`` -- ``dassl.data.transforms.randaugment`` (SolarizeAdd) and
    ``.autoaugment`` (SubPolicy: imagenet/cifar10/svhn policies) use
    ``np.int``, removed in numpy 2. Those two modules get a numpy proxy whose
    ``int`` is Python's ``int`` (numpy itself is not modified).
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
"""
import sys
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


# ---- (b) checkpoint loading ----------------------------------------------
def _patch_load_checkpoint():
    from clipwb.engine.builtin.utils.torchtools import load_checkpoint as safe_load

    from dassl.utils import torchtools

    original = torchtools.load_checkpoint
    if getattr(original, _MARK, False):
        return False

    def load_checkpoint(fpath):
        return safe_load(fpath)

    load_checkpoint.__doc__ = safe_load.__doc__
    setattr(load_checkpoint, _MARK, True)
    # Rebind in every loaded dassl module that imported the original by name.
    for name, module in list(sys.modules.items()):
        if (name == "dassl" or name.startswith("dassl.")) and module is not None:
            if getattr(module, "load_checkpoint", None) is original:
                module.load_checkpoint = load_checkpoint
    torchtools.load_checkpoint = load_checkpoint
    return True


# ---- (c) np.int ----------------------------------------------------------
class _NumpyWithInt(types.ModuleType):
    """numpy, plus the ``int`` alias numpy 2 removed."""

    int = int

    def __init__(self):
        super().__init__("numpy")
        setattr(self, _MARK, True)

    def __getattr__(self, name):
        return getattr(numpy, name)


def _patch_numpy_int():
    import importlib

    changed = False
    for mod_name in ("dassl.data.transforms.randaugment",
                     "dassl.data.transforms.autoaugment"):
        module = importlib.import_module(mod_name)
        if not getattr(module.np, _MARK, False):
            module.np = _NumpyWithInt()
            changed = True
    return changed


# ---- (d) image read errors -----------------------------------------------
def _patch_read_image():
    from clipwb.engine.builtin.utils.io import read_image

    from dassl.data import data_manager

    if data_manager.read_image is read_image:
        return False
    data_manager.read_image = read_image
    return True


_PATCHERS = {
    "warmup_verbose": _patch_warmup_verbose,
    "checkpoint_weights_only": _patch_load_checkpoint,
    "numpy_int": _patch_numpy_int,
}


def apply():
    """Apply every needed patch to the installed Dassl; return the names of
    the patches applied by this call (empty when already applied)."""
    import dassl.utils  # noqa: F401  (the patched modules must exist)

    applied = []
    for name in needed_patches():
        if _PATCHERS[name]():
            applied.append(name)
    return applied


def apply_usability():
    """Apply (d), this repository's own change to Dassl's image reading;
    return ``["read_image_errors"]`` if this call applied it."""
    import dassl.utils  # noqa: F401

    return ["read_image_errors"] if _patch_read_image() else []
