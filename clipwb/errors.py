"""Errors for bad user input, and helpers that turn config mistakes into them.

Every part of the project raises :class:`UserInputError` (or a subclass) for
input the user can fix: the message names the file, key or value and says how
to fix it. ``train.py`` prints that one sentence instead of a traceback.
"""
import contextlib
import difflib
import os
import pickle
import re


class UserInputError(Exception):
    """Bad input that the user can fix; the message says what and how."""


class MissingFileError(UserInputError, FileNotFoundError):
    """A file or folder the user must provide is missing."""


class ConfigError(UserInputError, ValueError):
    """A config file, key or value is wrong."""


class DiskFullError(UserInputError, OSError):
    """A file could not be written for want of space (disk full or quota)."""


def check_config_file(flag, path):
    """Raise a clear error when a config file given by ``flag`` is missing."""
    if not os.path.isfile(path):
        raise MissingFileError(
            "{} {}: no such file. Config files live under configs/ "
            "(e.g. configs/datasets/caltech101.yaml).".format(flag, path))


def config_keys(cfg, prefix=""):
    """Every full key name of a yacs config (``TRAINER.DISA.N_CTX_TEXT``, ...)."""
    keys = []
    for name, value in cfg.items():
        full = prefix + name
        if isinstance(value, dict):
            keys += config_keys(value, full + ".")
        else:
            keys.append(full)
    return keys


def closest_keys(cfg, key, n=3):
    """The existing keys most like ``key``: its misspelt last part in the same
    node first, then keys of other nodes with (nearly) that last part."""
    known = config_keys(cfg)
    parent, _, last = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
    near = [parent + "." + m if parent else m
            for m in difflib.get_close_matches(last, siblings, n=n, cutoff=0.6)]
    by_last = {}
    for k in known:
        by_last.setdefault(k.rpartition(".")[2], []).append(k)
    for m in difflib.get_close_matches(last, list(by_last), n=n, cutoff=0.8):
        near += [k for k in by_last[m] if k not in near]
    return near[:n]


_UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: (\S+)")


def unknown_key_hint(message, cfg):
    """For yacs' "Non-existent (config) key: K": the closest keys of ``cfg``,
    else how to check the key; None for other messages."""
    match = _UNKNOWN_KEY.search(message)
    if match is None:
        return None
    key = match.group(1)
    near = closest_keys(cfg, key) if cfg is not None else []
    if near:
        return "Did you mean {}?".format(" or ".join(near))
    parent = key.rpartition(".")[0]
    siblings = [k.rpartition(".")[2] for k in config_keys(cfg or {})
                if k.rpartition(".")[0] == parent]
    if parent and siblings:
        return "The keys of {} are: {}.".format(parent, ", ".join(sorted(siblings)))
    return ("Check the key's spelling; trainer keys exist only under TRAINER.<NAME> of a "
            "registered trainer.")


@contextlib.contextmanager
def friendly_errors(source, cfg=None):
    """Re-raise yacs' errors for unknown keys or bad values as ConfigError; an
    unknown key names the closest existing keys of ``cfg``."""
    try:
        yield
    except (KeyError, ValueError, AssertionError) as err:
        msg = str(err.args[0] if err.args else err)
        hint = unknown_key_hint(msg, cfg)
        if hint is None and isinstance(err, KeyError):
            hint = unknown_key_hint("Non-existent key: ?", None)
        if hint:
            msg = msg.rstrip(".") + ". " + hint
        raise ConfigError("{}: {}".format(source, msg)) from None


@contextlib.contextmanager
def resume_errors(checkpoint):
    """Re-raise torch's errors for a checkpoint that does not fit the model,
    optimizer or scheduler being resumed (another config or code version) as
    one UserInputError naming ``checkpoint`` (a file or a run folder); a file
    cut short or not a checkpoint at all gets its own sentence."""
    try:
        yield
    except UserInputError:
        raise
    except (EOFError, pickle.UnpicklingError) as err:
        raise UserInputError(
            'Cannot resume from "{}": it is not a readable checkpoint ({}: {}); the file is '
            "cut short or damaged. Move it away to train again from the previous "
            "checkpoint, or train into a new --output-dir.".format(
                checkpoint, type(err).__name__, err)) from None
    except (RuntimeError, ValueError, KeyError) as err:
        raise UserInputError(
            'Cannot resume from "{}": it does not fit this model or optimizer ({}). It was '
            "written with another config or code version: train into a new --output-dir "
            "(the old one is left as it is), or evaluate it with --eval-only --model-dir.".format(
                checkpoint, " ".join(str(err).split())[:300])) from None


class ClearResumeErrors:
    """Trainer mixin (before Dassl's trainer class in the bases): resuming
    from checkpoints of another config or code version gives one
    :func:`resume_errors` message on real Dassl too (the built-in engine names
    the file itself)."""

    def resume_model_if_exist(self, directory):
        with resume_errors(directory):
            return super().resume_model_if_exist(directory)
