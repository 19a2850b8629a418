"""Helpers for the end-to-end tests: run the real ``train.py`` and read its logs.

Every run is a subprocess from the repository root, as a user runs it. The
tiny settings below shrink each shipped trainer YAML to the tiny CLIP
(``tests/tiny_clip.py``: 32 px images, 2 transformer layers) and a tiny
dataset (``tests/dataset_layouts.py``).
"""
import atexit
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

from clipwb.engine import progress as progress_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PY = os.path.join(REPO, "scripts", "results.py")


def load_results_module():
    """``scripts/results.py`` as a module (the log parser the tools use)."""
    spec = importlib.util.spec_from_file_location("coop_results_e2e", RESULTS_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = load_results_module()

# Which shipped YAML each trainer runs with (the zero-shot CLIP uses CoOp's).
TRAINER_CONFIGS = {
    "ZeroshotCLIP": "configs/trainers/CoOp/vit_b16.yaml",
    "ZeroshotCLIP2": "configs/trainers/CoOp/vit_b16.yaml",
    "CoOp": "configs/trainers/CoOp/vit_b16_ctxv1.yaml",
    "CoCoOp": "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
    "IVLP": "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
    "MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "DiSa": "configs/trainers/DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "ISP": "configs/trainers/ISP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
}
ZERO_SHOT_TRAINERS = ["ZeroshotCLIP", "ZeroshotCLIP2"]
# The trainers of tests/test_train_e2e.py (DiSa and ISP have their own test
# files; tests/test_backend_parity.py runs them from the tables here too).
TRAINABLE_TRAINERS = ["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC"]

# Opts that fit every trainer to the tiny CLIP and dataset.
COMMON_OPTS = [
    "INPUT.SIZE", "(32, 32)",
    "DATALOADER.NUM_WORKERS", "0",
    "DATALOADER.TEST.BATCH_SIZE", "8",
    "DATASET.NUM_SHOTS", "4",
    "TRAIN.PRINT_FREQ", "1",
]
# Per-trainer opts: prompt depths within the 2 layers, a batch and an LR with
# which the loss falls within a few epochs on the tiny model.
TRAINER_OPTS = {
    "ZeroshotCLIP": [],
    "ZeroshotCLIP2": [],
    "CoOp": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.1"],
    "CoCoOp": ["DATALOADER.TRAIN_X.BATCH_SIZE", "2", "OPTIM.LR", "0.05"],
    "IVLP": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.1",
             "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2"],
    "MaPLe": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.1",
              "TRAINER.MAPLE.PROMPT_DEPTH", "2"],
    # PromptSRC: the shipped L_SCL weights (25, 10) need a small step here.
    "PromptSRC": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.001",
                  "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
                  "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
                  "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1"],
    # DiSa and ISP carry PromptSRC's L_SCL weights (25, 10) too.
    "DiSa": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.001",
             "TRAINER.DISA.PROMPT_DEPTH_VISION", "2", "TRAINER.DISA.PROMPT_DEPTH_TEXT", "2",
             "TRAINER.DISA.GPA_MEAN", "2", "TRAINER.DISA.GPA_STD", "1"],
    "ISP": ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.LR", "0.001",
            "TRAINER.ISP.PROMPT_DEPTH_VISION", "2", "TRAINER.ISP.PROMPT_DEPTH_TEXT", "2"],
}

# Dassl's progress line "epoch [e/E] batch [b/B] time ... loss X (avg) ...", as the
# engine prints and parses it (group 1: the epoch).
PROGRESS_RE = progress_line.PROGRESS_RE
# The evaluator block that ends every test log (Dassl's Classification).
EVAL_BLOCK_RE = re.compile(
    r"=> result\n"
    r"\* total: (\d+)\n"
    r"\* correct: (\d+)\n"
    r"\* accuracy: (\d+\.\d)%\n"
    r"\* error: (\d+\.\d)%\n"
    r"\* macro_f1: (\d+\.\d)%\n")


def subprocess_env(**extra):
    """The environment of a child run: CPU only, one thread, no user overrides."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRAINER", "CFG", "CFG_DIR", "SHOTS", "OPTS", "BACKBONE", "LOADEP",
                        "ZERO_SHOT", "DATASETS", "SEEDS", "XD_DATASETS", "OUTPUT", "DATA",
                        "PYTHON", "TRAINPY", "DATASET_CFG_DIR", "DATA_DOWNLOAD", "VERBOSE",
                        "EXPERT_OPTS", "EXPERT_TRAINER", "EXPERT_CFG", "EXPERT_PER_TARGET",
                        "SOURCES", "DOMAINS", "PRESET", "NPROC")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


_SERVER = []
_SERVER_LOCK = threading.Lock()


def train_server():
    """The session's :class:`tests.train_server.TrainServer` (started on first use)."""
    with _SERVER_LOCK:
        if not _SERVER:
            from tests.train_server import TrainServer

            scratch = tempfile.mkdtemp(prefix="train_server_")
            _SERVER.append(TrainServer(subprocess_env(), REPO, scratch))
            atexit.register(_SERVER[0].close)
            atexit.register(shutil.rmtree, scratch, True)
        return _SERVER[0]


def script_python():
    """``PYTHON`` (and the server's socket) for a bash run script: its
    ``python train.py`` / ``scripts/results.py`` runs are forked from the
    train server; anything else it runs with the real interpreter."""
    return train_server().script_env()


def run_train_py(args, env=None, timeout=300, python=None):
    """Run ``python train.py ARGS`` from the repository root; return the
    finished process. Forked from the tests' train server (no start-up cost)
    unless another interpreter or an import-time variable asks for a real one."""
    env = env or subprocess_env()
    argv = ["train.py"] + [str(a) for a in args]
    if python is None and train_server().can_run(env):
        return train_server().run(argv, env, timeout)
    return subprocess.run([python or sys.executable] + argv, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def train_args(trainer, data_root, output_dir, clip_path, *extra, seed=1,
               dataset_config="configs/datasets/caltech101.yaml", flags=()):
    """The command line of one tiny run of ``trainer`` (flags first, then opts)."""
    return (["--root", data_root, "--seed", seed, "--trainer", trainer,
             "--dataset-config-file", dataset_config,
             "--config-file", TRAINER_CONFIGS[trainer],
             "--output-dir", output_dir] + list(flags)
            + ["MODEL.BACKBONE.NAME", clip_path] + COMMON_OPTS + TRAINER_OPTS[trainer]
            + list(extra))


def selected(request, param):
    """The values of ``param`` in the tests of the requesting module that run
    in this session (after ``-m`` / ``-k`` selection), so that a module
    fixture runs only the jobs those tests need."""
    return {item.callspec.params[param] for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec")
            and param in item.callspec.params}


def params(values, slow=()):
    """``values`` for ``parametrize``, the ones in ``slow`` marked ``slow``."""
    import pytest

    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in values]


def run_all(jobs, workers=2):
    """Run the zero-argument callables ``jobs`` (a dict name -> callable) on
    ``workers`` threads; return name -> result, or name -> the exception."""
    def call(fn):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - reported by the test that needs it
            return err

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(call, fn) for name, fn in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def describe(proc):
    """Exit status and output of a finished process, for assertion messages."""
    return "exit {}\n--- stdout (tail)\n{}\n--- stderr\n{}".format(
        proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])


def log_paths(run_dir):
    """The Dassl log files of ``run_dir``, oldest first (log.txt, log.txt-<time>...)."""
    return results.log_files(run_dir)


def read_log(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def progress(text):
    """``[(epoch, batch, loss), ...]`` from the progress lines of a log."""
    return [(p.epoch, p.batch, p.loss) for p in progress_line.parse_progress(text)]


def epoch_mean_losses(text):
    """``{epoch: mean per-iteration loss}`` of a training log."""
    per_epoch = {}
    for epoch, _, loss in progress(text):
        per_epoch.setdefault(epoch, []).append(loss)
    return {e: sum(v) / len(v) for e, v in per_epoch.items()}


def evaluator_block(text):
    """``(total, correct, accuracy, error, macro_f1)`` of the last evaluator block."""
    blocks = EVAL_BLOCK_RE.findall(text)
    if not blocks:
        return None
    total, correct, acc, err, f1 = blocks[-1]
    return int(total), int(correct), float(acc), float(err), float(f1)


def ends_with_evaluator_block(text, allow_elapsed=True):
    """Whether the evaluator block ends the log. After a training run Dassl
    prints one ``Elapsed: H:MM:SS`` line after it (``allow_elapsed``)."""
    match = None
    for match in EVAL_BLOCK_RE.finditer(text):
        pass
    if match is None:
        return False
    rest = [line for line in text[match.end():].splitlines() if line.strip()]
    if allow_elapsed:
        return all(re.match(r"^Elapsed: \d+:\d\d:\d\d$", line) for line in rest)
    return not rest


def snapshot(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    out = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def run_stopped_at(command, prefix, env=None, merge_stderr=False):
    """Run ``command`` in the repository, send it SIGTERM when it prints a line
    starting with ``prefix`` (as a shell's or a scheduler's kill), and wait
    for it. Returns ``(process, printed lines, whether it was signalled)``;
    the process's stderr is unread unless ``merge_stderr``."""
    proc = subprocess.Popen(command, cwd=REPO, env=env or subprocess_env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            text=True)
    printed, killed = [], False
    for line in proc.stdout:
        printed.append(line.rstrip("\n"))
        if not killed and line.startswith(prefix):
            proc.send_signal(signal.SIGTERM)
            killed = True
    proc.wait(timeout=300)
    return proc, printed, killed
