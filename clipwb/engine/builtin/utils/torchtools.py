"""Checkpoint files and weight loading (Dassl's ``torchtools``), torch 2.x safe.

Checkpoints are dicts ``{"state_dict", "epoch", "optimizer", "scheduler",
"val_result"}`` saved as ``<dir>/model.pth.tar-<epoch>`` with a ``checkpoint``
file beside them naming the latest one. Every file is written whole or not
at all (:mod:`.atomic`: a temporary file, fsync, ``os.replace``; a full disk
is one sentence naming the file), the pointer file last, so a save killed
half-way leaves the previous files as they were.

Loading uses ``torch.load(weights_only=True)`` first. Only a file the trainer
itself writes (named ``model.pth.tar-N`` / ``model-best.pth.tar``, or sitting
beside a ``checkpoint`` pointer file) may fall back to ``weights_only=False``:
Dassl's warmup schedulers pickle whole scheduler objects into it.
"""
import os.path as osp
import pickle
import re
import warnings
from collections import OrderedDict

import torch
import torch.nn as nn

from clipwb.errors import MissingFileError, UserInputError, resume_errors

from .atomic import copy_atomically, save_atomically, write_atomically
from .io import mkdir_if_missing

__all__ = ["save_checkpoint", "load_checkpoint", "resume_from_checkpoint",
           "load_pretrained_weights", "count_num_param", "open_all_layers",
           "open_specified_layers", "is_trainer_checkpoint"]

_TRAINER_FILE = re.compile(r"^(model\.pth\.tar-\d+|model-best\.pth\.tar)$")


def _strip_module_prefix(state_dict):
    out = OrderedDict()
    for key, value in state_dict.items():
        out[key[7:] if key.startswith("module.") else key] = value
    return out


def save_checkpoint(state, save_dir, is_best=False,
                    remove_module_from_keys=True, model_name=""):
    """Save ``state`` to ``save_dir/model_name`` (default ``model.pth.tar-<epoch>``).

    Then rewrites ``save_dir/checkpoint`` with the file's name, and copies the
    file to ``model-best.pth.tar`` when ``is_best``; each file atomically.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module_prefix(state["state_dict"])
    if not model_name:
        model_name = "model.pth.tar-" + str(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    save_atomically(state, fpath)
    print("Checkpoint saved to {}".format(fpath))
    write_atomically(osp.join(save_dir, "checkpoint"), osp.basename(fpath) + "\n")
    if is_best:
        best_fpath = osp.join(save_dir, "model-best.pth.tar")
        copy_atomically(fpath, best_fpath)
        print('Best checkpoint saved to "{}"'.format(best_fpath))


def is_trainer_checkpoint(fpath):
    """True for files in the layout the trainer writes (see module docstring)."""
    name = osp.basename(fpath)
    return bool(_TRAINER_FILE.match(name)) or osp.isfile(
        osp.join(osp.dirname(fpath), "checkpoint"))


def _map_location():
    return None if torch.cuda.is_available() else "cpu"


def _torch_load(fpath, weights_only):
    try:
        return torch.load(fpath, map_location=_map_location(),
                          weights_only=weights_only)
    except UnicodeDecodeError:  # a Python 2 pickle
        return torch.load(fpath, map_location=_map_location(),
                          weights_only=False, encoding="latin1")


def load_checkpoint(fpath, weights_only=None):
    """Load a checkpoint (any torch-saved object) onto the CPU if no CUDA.

    ``weights_only=None`` (default): safe loading, with the fallback described
    in the module docstring for the trainer's own files. A missing or corrupt
    file raises an error naming it.
    """
    if fpath is None:
        raise UserInputError("load_checkpoint(): the file path is None")
    fpath = str(fpath)
    if not osp.exists(fpath):
        raise MissingFileError('Checkpoint not found at "{}"'.format(fpath))
    try:
        if weights_only is not None:
            return _torch_load(fpath, weights_only)
        try:
            return _torch_load(fpath, True)
        except pickle.UnpicklingError as err:
            if is_trainer_checkpoint(fpath):
                return _torch_load(fpath, False)
            if "weights_only" in str(err):
                raise UserInputError(
                    '"{}" holds Python objects that torch.load(weights_only='
                    "True) refuses. If you trust the file, load it with "
                    "load_checkpoint(path, weights_only=False) or save its "
                    "state dict alone.".format(fpath)) from None
            raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError,
            AttributeError, ImportError) as err:
        raise UserInputError(
            'Unable to load checkpoint "{}": {}: {}. The file is corrupt, '
            "truncated or not a torch checkpoint; re-create it or pass "
            "another file.".format(fpath, type(err).__name__,
                                   str(err).splitlines()[0] if str(err) else ""
                                   )) from None


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Load the checkpoint named in ``fdir/checkpoint``; return its epoch."""
    pointer = osp.join(fdir, "checkpoint")
    if not osp.isfile(pointer):
        raise MissingFileError(
            'No "checkpoint" file in "{}": nothing to resume from'.format(fdir))
    with open(pointer, "r") as f:
        lines = [line.strip() for line in f.readlines() if line.strip()]
    if not lines:
        raise UserInputError('"{}" is empty; delete it to train from '
                             "scratch".format(pointer))
    fpath = osp.join(fdir, lines[0])
    print('Loading checkpoint from "{}"'.format(fpath))
    checkpoint = load_checkpoint(fpath, weights_only=False
                                 if is_trainer_checkpoint(fpath) else None)
    with resume_errors(fpath):
        model.load_state_dict(checkpoint["state_dict"])
        print("Loaded model weights")
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
            print("Loaded optimizer")
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
            print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print("Previous epoch: {}".format(start_epoch))
    return start_epoch


def count_num_param(model=None, params=None):
    """Number of scalar parameters of ``model`` (or of a list of params/groups)."""
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        total = 0
        for p in params:
            if isinstance(p, dict):
                group = p["params"]
                group = [group] if isinstance(group, torch.Tensor) else group
                total += sum(q.numel() for q in group)
            else:
                total += p.numel()
        return total
    raise ValueError("count_num_param(): give a model or params")


def load_pretrained_weights(model, weight_path):
    """Copy the tensors of ``weight_path`` whose name and shape match ``model``.

    Keys may carry a ``module.`` prefix; unmatched ones are listed and skipped.
    """
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise UserInputError(
            '"{}" holds a {}, not a state dict'.format(
                weight_path, type(state_dict).__name__))
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for key, value in _strip_module_prefix(state_dict).items():
        if key in model_dict and model_dict[key].size() == value.size():
            matched[key] = value
        else:
            discarded.append(key)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn("Cannot load {} (check the key names manually)".format(
            weight_path))
        return
    print("Successfully loaded pretrained weights from {}".format(weight_path))
    if discarded:
        print("Layers discarded due to unmatched keys or size: {}".format(
            discarded))


def open_all_layers(model):
    """Put ``model`` in train mode with every parameter trainable."""
    model.train()
    for p in model.parameters():
        p.requires_grad = True


def open_specified_layers(model, open_layers):
    """Train only the named child modules; freeze and eval the others."""
    if isinstance(model, nn.DataParallel):
        model = model.module
    if isinstance(open_layers, str):
        open_layers = [open_layers]
    for layer in open_layers:
        if not hasattr(model, layer):
            raise ValueError("{} is not an attribute of the model".format(layer))
    for name, module in model.named_children():
        trainable = name in open_layers
        module.train(trainable)
        for p in module.parameters():
            p.requires_grad = trainable
