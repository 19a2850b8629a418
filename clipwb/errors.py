"""Errors for bad user input, and helpers that turn config mistakes into them.

Every part of the project raises :class:`UserInputError` (or a subclass) for
input the user can fix: the message names the file, key or value and says how
to fix it. ``train.py`` prints that one sentence instead of a traceback.
"""
import contextlib
import os


class UserInputError(Exception):
    """Bad input that the user can fix; the message says what and how."""


class MissingFileError(UserInputError, FileNotFoundError):
    """A file or folder the user must provide is missing."""


class ConfigError(UserInputError, ValueError):
    """A config file, key or value is wrong."""


def check_config_file(flag, path):
    """Raise a clear error when a config file given by ``flag`` is missing."""
    if not os.path.isfile(path):
        raise MissingFileError(
            "{} {}: no such file. Config files live under configs/ "
            "(e.g. configs/datasets/caltech101.yaml).".format(flag, path))


@contextlib.contextmanager
def friendly_errors(source):
    """Re-raise yacs' errors for unknown keys or bad values as ConfigError."""
    try:
        yield
    except KeyError as err:
        msg = err.args[0] if err.args else str(err)
        raise ConfigError(
            "{}: {}. Check the key's spelling; trainer keys exist only under "
            "TRAINER.<NAME> of a registered trainer.".format(source, msg)) from None
    except (ValueError, AssertionError) as err:
        raise ConfigError("{}: {}".format(source, err)) from None


@contextlib.contextmanager
def resume_errors(checkpoint):
    """Re-raise torch's errors for a checkpoint that does not fit the model,
    optimizer or scheduler being resumed (another config or code version) as
    one UserInputError naming ``checkpoint`` (a file or a run folder)."""
    try:
        yield
    except UserInputError:
        raise
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
