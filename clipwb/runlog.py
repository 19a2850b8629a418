"""The run's log file and console, on top of Dassl's ``Logger``.

Dassl's ``setup_logger`` replaces ``sys.stdout`` by a ``Logger`` that writes
every printed line to the console (``logger.console``) and to ``log.txt``
(``logger.file``). Both engines' loggers have those two attributes; the
functions here work on either and do nothing when ``sys.stdout`` is not one:

- :func:`line_buffered`: the log file gets each line as it is printed (Dassl
  opens it block-buffered, so a killed run lost everything after the setup);
- :func:`file_only`: lines printed inside go to the log file only (the config
  and environment dump, the model build);
- :func:`log_line`: one line into the log file only (the error a failed run
  prints on stderr);
- :func:`set_quiet` / :func:`setup_output`: ``train.py`` sets the console
  quiet (the default; ``--verbose`` turns it off), and the trainer's setup
  before the first epoch then goes to the log file only.
"""
import contextlib
import sys

__all__ = ["log_file", "line_buffered", "file_only", "log_line", "set_quiet",
           "setup_output", "header_lines"]

_QUIET = [False]


def set_quiet(quiet):
    """Whether setup output (:func:`setup_output`) stays off the console."""
    _QUIET[0] = bool(quiet)


def _logger():
    out = sys.stdout
    if hasattr(out, "console") and hasattr(out, "file"):
        return out
    return None


def log_file():
    """The open log file of the Logger that ``sys.stdout`` is, or None."""
    logger = _logger()
    f = getattr(logger, "file", None)
    if f is None or getattr(f, "closed", True) or not hasattr(f, "name"):
        return None
    return f


def line_buffered():
    """Reopen the log file line-buffered (appending), once."""
    f = log_file()
    if f is None or getattr(f, "line_buffering", False):
        return
    f.flush()
    sys.stdout.file = open(f.name, "a", buffering=1, encoding=f.encoding)
    f.close()


class _Discard:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


@contextlib.contextmanager
def file_only(enabled=True):
    """Send what is printed inside to the log file only (no-op when
    ``enabled`` is false or there is no log file)."""
    logger = _logger()
    if not enabled or log_file() is None:
        yield
        return
    console = logger.console
    logger.console = _Discard()
    try:
        yield
    finally:
        logger.console = console


def setup_output():
    """:func:`file_only` when the console is quiet, else a no-op."""
    return file_only(_QUIET[0])


def log_line(text):
    """Write ``text`` as one line into the log file only."""
    f = log_file()
    if f is not None:
        f.write(text.rstrip("\n") + "\n")
        f.flush()


def _data_description(cfg):
    data = cfg.DATASET
    parts = []
    subsample = getattr(data, "SUBSAMPLE_CLASSES", "all")
    if subsample in ("base", "new"):
        parts.append("{} classes".format(subsample))
    if data.NUM_SHOTS > 0:
        parts.append("{} shots".format(data.NUM_SHOTS))
    if data.SOURCE_DOMAINS:
        parts.append("sources {}".format(", ".join(data.SOURCE_DOMAINS)))
    if data.TARGET_DOMAINS:
        parts.append("targets {}".format(", ".join(data.TARGET_DOMAINS)))
    parts.append("seed {}".format(cfg.SEED))
    return "{} ({})".format(data.NAME, ", ".join(parts))


def header_lines(cfg, trainer, backend, config_files, log_path=None, eval_only=False):
    """The short console header of a run: what runs, on what, where it goes."""
    engine = "real Dassl" if backend == "dassl" else "built-in engine"
    device = getattr(trainer, "device", "cpu")
    precision = getattr(trainer, "precision", None)
    lines = [
        "** {} {} {}".format(cfg.TRAINER.NAME, "evaluated on" if eval_only else "on",
                             _data_description(cfg)),
        "   config:  {}".format(", ".join(f for f in config_files if f) or "(defaults)"),
        "   output:  {}".format(cfg.OUTPUT_DIR or "."),
        "   engine:  {}, device {}{}, backbone {}".format(
            engine, device, ", precision {}".format(precision) if precision else "",
            cfg.MODEL.BACKBONE.NAME),
    ]
    if log_path:
        lines.append("   log:     {} (full config, environment and model; "
                     "--verbose prints them here too)".format(log_path))
    return lines
