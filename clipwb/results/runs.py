"""Reading runs: the ``log.txt`` files of a CoOp-family output tree, each run
dir classified by its place in a known layout (base-to-novel, cross-dataset,
few-shot, domain generalization), and the runs without a result with the
reason their newest log gives.

A run's result is the last ``* accuracy: X%`` line of its newest log file
that has one (Dassl writes ``log.txt``, then ``log.txt-<timestamp>`` when the
run dir already had a log).
"""
import os
import re
from collections import namedtuple

from clipwb.errors import UserInputError
from clipwb.results import variants

# The 11 base-to-novel datasets (config names) in the papers' order, then the
# ImageNet variants of the domain-generalization setting.
BASE2NEW_DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars",
                     "oxford_flowers", "food101", "fgvc_aircraft", "sun397", "dtd",
                     "eurosat", "ucf101"]
IMAGENET_VARIANTS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
XD_SOURCE = "imagenet"

SETTINGS = ("base2new", "cross-dataset", "few-shot", "dg")
BASE2NEW_PHASES = ("train_base", "test_base", "test_new")

ACCURACY_RE = re.compile(r"^\* accuracy: ([0-9]+(?:\.[0-9]+)?)%\s*$")
LOG_NAME_RE = re.compile(r"^log\.txt(-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})?$")
SEED_RE = re.compile(r"^seed(\d+)$")
SHOTS_DIR_RE = re.compile(r"^shots_(\d+)$")
CFG_SHOTS_RE = re.compile(r"^(.+)_(\d+)shots$")

# The trainer's last line of a failed run ("Error: ...") or of an interrupted
# one ("Interrupted ..."); a traceback's last line ("RuntimeError: ...").
ERROR_LINE_RE = re.compile(r"^(?:Error: |Interrupted)")
EXCEPTION_LINE_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:KeyboardInterrupt|SystemExit"
                               r"|[A-Z]\w*(?:Error|Exception))(?::\s.*)?$")
TRACEBACK_HEADER = "Traceback (most recent call last)"
LAST_LINE_WIDTH, ERROR_WIDTH = 80, 120

Run = namedtuple("Run", "setting phase dataset trainer cfg shots seed accuracy log")
Collection = namedtuple("Collection", "runs incomplete unrecognised")
FailedRun = namedtuple("FailedRun", "run_dir log status logs")  # logs: how many log files


class ResultsError(UserInputError, ValueError):
    """Bad input to the results tool; the message says what to fix."""


def parse_accuracy(log_path):
    """Return the last ``* accuracy: X%`` value of a Dassl log (in %), or None."""
    accuracy = None
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = ACCURACY_RE.match(line.strip())
            if match:
                accuracy = float(match.group(1))
    return accuracy


def log_files(run_dir, names=None):
    """The Dassl log files of ``run_dir``, oldest first."""
    if names is None:
        names = os.listdir(run_dir)
    logs = [n for n in names if LOG_NAME_RE.match(n)]
    # "log.txt" is the first log; the timestamp suffixes sort chronologically.
    logs.sort(key=lambda n: n[len("log.txt"):])
    return [os.path.join(run_dir, n) for n in logs]


def run_result(run_dir, names=None):
    """``(log_path, accuracy)`` of the newest log with a result, else ``(None, None)``."""
    for path in reversed(log_files(run_dir, names)):
        accuracy = parse_accuracy(path)
        if accuracy is not None:
            return path, accuracy
    return None, None


def _join_cfg(cfg, extra):
    """The config name with the layout's extra levels: ``cfg/level/...``."""
    return "/".join([cfg] + list(extra))


def classify_run_dir(run_dir):
    """Describe a run dir by its place in a CoOp-family layout, or return None.

    Returns a dict with ``setting``, ``phase``, ``dataset``, ``trainer``, ``cfg``,
    ``shots`` and ``seed``.
    """
    parts = os.path.normpath(os.path.abspath(run_dir)).split(os.sep)
    parts, variant = variants.split_variant(parts, BASE2NEW_PHASES)  # CFG/VARIANT below
    seed_match = SEED_RE.match(parts[-1])
    if not seed_match:
        return None
    seed = int(seed_match.group(1))
    # dg/DATASET/shots_K/TRAINER/CFG[/VARIANT]/TARGET/seedS (phase = the target domain)
    if len(parts) >= 7 and parts[-7] == "dg" and SHOTS_DIR_RE.match(parts[-5]):
        setting = "dg-expert" if parts[-2].startswith("expert_") else "dg"
        return dict(setting=setting, phase=parts[-2], dataset=parts[-6],
                    shots=int(SHOTS_DIR_RE.match(parts[-5]).group(1)),
                    trainer=parts[-4], cfg=variants.join(parts[-3], variant), seed=seed)
    # {phase}/DATASET/shots_K/TRAINER/CFG[/VARIANT]/seedS
    if len(parts) >= 6 and parts[-6] in BASE2NEW_PHASES and SHOTS_DIR_RE.match(parts[-4]):
        return dict(setting="base2new", phase=parts[-6], dataset=parts[-5],
                    shots=int(SHOTS_DIR_RE.match(parts[-4]).group(1)),
                    trainer=parts[-3], cfg=variants.join(parts[-2], variant), seed=seed)
    # evaluation/TRAINER/CFG_Kshots[/...]/DATASET/seedS
    for i in range(len(parts) - 5, -1, -1):
        cfg_match = CFG_SHOTS_RE.match(parts[i + 2])
        if parts[i] == "evaluation" and cfg_match:
            return dict(setting="cross-dataset", phase="test", dataset=parts[-2],
                        trainer=parts[i + 1],
                        cfg=_join_cfg(cfg_match.group(1), parts[i + 3:-2]),
                        shots=int(cfg_match.group(2)), seed=seed)
    # DATASET/TRAINER/CFG_Kshots[/...]/seedS
    for j in range(len(parts) - 2, 1, -1):
        cfg_match = CFG_SHOTS_RE.match(parts[j])
        if cfg_match:
            return dict(setting="few-shot", phase="train", dataset=parts[j - 2],
                        trainer=parts[j - 1],
                        cfg=_join_cfg(cfg_match.group(1), parts[j + 1:-1]),
                        shots=int(cfg_match.group(2)), seed=seed)
    return None


def collect_results(root):
    """Walk ``root`` and return a ``Collection``.

    ``runs``: one ``Run`` per run dir with a result; ``incomplete``: the newest
    log of each run dir without a ``* accuracy:`` line; ``unrecognised``: logs
    with a result outside the known layouts.
    """
    if not os.path.isdir(root):
        raise ResultsError("{}: no such directory. Give the output folder of the "
                           "runs, e.g. output/base2new.".format(root))
    runs, incomplete, unrecognised = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        logs = log_files(dirpath, filenames)
        if not logs:
            continue
        log, accuracy = run_result(dirpath, filenames)
        if accuracy is None:
            incomplete.append(logs[-1])
            continue
        info = classify_run_dir(dirpath)
        if info is None:
            unrecognised.append(log)
            continue
        runs.append(Run(accuracy=accuracy, log=log, **info))
    return Collection(runs, incomplete, unrecognised)


def shorten(text, width):
    """``text`` cut to ``width`` characters, ending in "..." when it was longer."""
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def scan_log(log_path):
    """``(error_line, last_line)`` of a log: its last error line (``Error: ...``,
    ``Interrupted ...``, a traceback's exception line), or None; and its last
    non-empty line, or None for an empty log."""
    error, last, in_traceback = None, None, False
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip()
            if not line.strip():
                continue
            last = line.strip()
            if line.startswith(TRACEBACK_HEADER):
                in_traceback = True
            elif in_traceback and not line[0].isspace():
                error, in_traceback = last, False  # the exception line ends the traceback
            elif ERROR_LINE_RE.match(line) or EXCEPTION_LINE_RE.match(line):
                error = last
    return error, last


def log_status(log_path):
    """Why a log has no result: its error line, else "unfinished (last line: ...)"."""
    error, last = scan_log(log_path)
    if error is not None:
        return shorten(error, ERROR_WIDTH)
    if last is None:
        return "unfinished (empty log)"
    return "unfinished (last line: {})".format(shorten(last, LAST_LINE_WIDTH))


def failed_run_matches(info, log, filters):
    """Whether a classified run dir without a result passes the ``filter_runs``
    filters. A GuiDG expert run counts as ``dg``; an ImageNet few-shot run may
    be a cross-dataset source, so it counts as ``cross-dataset`` too."""
    settings = [info["setting"]]
    if info["setting"] == "dg-expert":
        settings.append("dg")
    if info["setting"] == "few-shot" and info["dataset"] == XD_SOURCE:
        settings.append("cross-dataset")
    return any(filter_runs([Run(accuracy=None, log=log, **dict(info, setting=setting))],
                           **filters) for setting in settings)


def failed_runs(incomplete, **filters):
    """One ``FailedRun`` per newest log of ``incomplete`` (``Collection.incomplete``),
    leaving out the run dirs in a known layout that the filters exclude."""
    failed = []
    for log in incomplete:
        run_dir = os.path.dirname(log)
        info = classify_run_dir(run_dir)
        if info is not None and not failed_run_matches(info, log, filters):
            continue
        failed.append(FailedRun(run_dir, log, log_status(log), len(log_files(run_dir))))
    return failed


def filter_runs(runs, trainers=None, cfgs=None, shots=None, datasets=None,
                seeds=None, settings=None):
    """Keep the runs that match every given filter (None: no filter).

    Trainer names match case-insensitively; a config matches its own name or a
    variant below it (``rn50`` matches ``rn50/nctx16_cscFalse_ctpend``).
    """
    def keep(run):
        if trainers and run.trainer.lower() not in {t.lower() for t in trainers}:
            return False
        if cfgs and not any(run.cfg == c or run.cfg.startswith(c + "/") for c in cfgs):
            return False
        if shots and run.shots not in shots:
            return False
        if datasets and run.dataset not in datasets:
            return False
        if seeds and run.seed not in seeds:
            return False
        if settings and run.setting not in settings:
            return False
        return True
    return [r for r in runs if keep(r)]
