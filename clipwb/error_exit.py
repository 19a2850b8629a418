"""How a command ends on bad input: one sentence, not a traceback.

A :class:`~clipwb.errors.UserInputError` that reaches the top of a run is
printed as ``Error: <the sentence>`` on stderr (and into the run's
``log.txt``), and the process exits with status 2:

- this project's ``train.py`` catches it around ``main`` and calls
  :func:`fail`;
- a CoOp / MaPLe / PromptSRC checkout's ``train.py`` catches nothing, so
  ``import clipwb.plugin`` (the line the drop-in writes there) installs
  :func:`exit_on_user_errors`, a ``sys.excepthook`` that does the same for an
  error raised by the plugin, by its readers or trainers, or by that import
  itself (a bad ``DASSL_BACKEND``). Every other exception keeps Python's own
  report, and so does an interactive session.
"""
import atexit
import os
import sys

from clipwb import runlog
from clipwb.errors import UserInputError

__all__ = ["user_error_message", "fail", "exit_on_user_errors"]


def user_error_message(err):
    """The one-line message of a UserInputError.

    An error raised in a DataLoader worker (e.g. a corrupt image) comes back
    with the worker's traceback in its message; keep only the original message.
    """
    text = str(err)
    if "Original Traceback" in text:
        name = "{}.{}: ".format(type(err).__module__, type(err).__qualname__)
        text = text.rsplit(name, 1)[-1]
    return text.strip()


def fail(message, status):
    """Print ``message`` on stderr and into the run's log.txt, and exit."""
    print(message, file=sys.stderr)
    runlog.log_line(message)
    sys.exit(status)


def _report_and_exit(message, status):
    """:func:`fail` from inside ``sys.excepthook``, where raising SystemExit
    is not possible: the exit handlers run and the streams are flushed, then
    the process ends with ``status``."""
    print(message, file=sys.stderr)
    runlog.log_line(message)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def exit_on_user_errors():
    """Make an uncaught UserInputError of this process one line on stderr
    and exit status 2 (installed once; other exceptions go to the hook that
    was there)."""
    previous = sys.excepthook
    if getattr(previous, "clipwb_user_errors", False):
        return

    def hook(kind, err, traceback):
        if not issubclass(kind, UserInputError) or hasattr(sys, "ps1") or sys.flags.interactive:
            return previous(kind, err, traceback)
        _report_and_exit("Error: {}".format(user_error_message(err)), 2)

    hook.clipwb_user_errors = True
    sys.excepthook = hook
