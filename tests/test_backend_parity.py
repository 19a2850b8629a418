"""Real Dassl and the built-in engine give the same run, through ``train.py``.

Skipped unless ``dassl`` imports (it is not on PyPI; see docs/ENGINE.md to
install it in a virtualenv, then run this file with that interpreter). The
same trainer, seed, tiny CLIP and tiny dataset run once per backend
(``DASSL_BACKEND``); each backend gets its own copy of the dataset, so each
draws its own few-shot split. The per-iteration losses, the few-shot split and
the evaluator block must be identical.
"""
import glob
import os
import pickle
import re
import sys

import pytest

pytest.importorskip("dassl")

from tests import e2e_helpers as h  # noqa: E402
from tests.dataset_layouts import write_dataset  # noqa: E402

TRAINERS = ["CoOp", "PromptSRC", "DiSa", "ISP"]
BACKENDS = ["dassl", "builtin"]
EPOCHS = 2


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory, tiny_clip_path):
    root = tmp_path_factory.mktemp("parity")

    def job(trainer, backend):
        data = str(root / "data_{}_{}".format(trainer, backend))
        write_dataset(data, "Caltech101", n_classes=4)
        out = str(root / "out_{}_{}".format(trainer, backend))
        proc = h.run_train_py(
            h.train_args(trainer, data, out, tiny_clip_path, "OPTIM.MAX_EPOCH", EPOCHS,
                         "DATASET.SUBSAMPLE_CLASSES", "base"),
            env=h.subprocess_env(DASSL_BACKEND=backend))
        return {"proc": proc, "out": out, "data": data}

    jobs = {(t, b): (lambda t=t, b=b: job(t, b)) for t in TRAINERS for b in BACKENDS}
    return h.run_all(jobs, workers=2)


def finished(parity_runs, trainer, backend):
    result = parity_runs[(trainer, backend)]
    if isinstance(result, Exception):
        pytest.fail("{} on {} did not run: {!r}".format(trainer, backend, result))
    assert result["proc"].returncode == 0, "{} on {}: {}".format(
        trainer, backend, h.describe(result["proc"]))
    result["log"] = h.read_log(os.path.join(result["out"], "log.txt"))
    return result


def shots(result):
    """``(Datum modules, {split: [image path relative to DATA, ...]})`` of a
    run's few-shot cache; the module tells which engine sampled the shots."""
    path = os.path.join(result["data"], "caltech-101", "split_fewshot", "shot_4-seed_1.pkl")
    modules = set()

    class AnyDatum:
        pass

    class Loader(pickle.Unpickler):  # Datum may be Dassl's or ours
        def find_class(self, module, name):
            if name == "Datum":
                modules.add(module)
                return AnyDatum
            return super().find_class(module, name)

    with open(path, "rb") as f:
        data = Loader(f).load()
    paths = {split: [os.path.relpath(vars(d).get("_impath", vars(d).get("impath")),
                                     result["data"]) for d in items]
             for split, items in data.items()}
    return modules, paths


@pytest.mark.parametrize("trainer", TRAINERS)
def test_same_losses_and_accuracy_on_both_backends(parity_runs, trainer):
    dassl = finished(parity_runs, trainer, "dassl")
    builtin = finished(parity_runs, trainer, "builtin")
    # Each run used the engine it was given: the cached Datum objects are its own.
    dassl_modules, dassl_shots = shots(dassl)
    builtin_modules, builtin_shots = shots(builtin)
    assert all(m.startswith("dassl.") for m in dassl_modules), dassl_modules
    assert all(m.startswith("clipwb.engine.builtin") for m in builtin_modules), builtin_modules
    assert builtin_shots == dassl_shots
    dassl_losses = h.progress(dassl["log"])
    assert len(dassl_losses) == EPOCHS * 2, dassl["log"][-2000:]
    assert h.progress(builtin["log"]) == dassl_losses
    block = h.evaluator_block(dassl["log"])
    assert block is not None and h.evaluator_block(builtin["log"]) == block


def test_guidg_official_preset_same_on_both_backends(toy_data, tmp_path):
    """GuiDG's official preset (per-batch cosine past T_max, validation every
    2 epochs, the kept last batch, RandAugment, the WiSE-FT reset) logs the
    same steps, learning rates and evaluations on real Dassl and built-in."""
    import subprocess

    logs = {}
    for backend in BACKENDS:
        out = tmp_path / backend
        env = h.subprocess_env(
            DASSL_BACKEND=backend, PRESET="official", DATA=toy_data, OUTPUT=str(out),
            SHOTS=4, PYTHON=sys.executable,
            OPTS="OPTIM.MAX_EPOCH 2 TRAINER.GUIDG.ITERS_PER_EPOCH 3 TRAIN.PRINT_FREQ 1 "
                 "TRAINER.GUIDG.BASELINE erm TRAINER.GUIDG.WISE_RESET True",
            EXPERT_OPTS="OPTIM.MAX_EPOCH 3 TRAIN.PRINT_FREQ 1 OPTIM.COSINE_T_MAX_ITERS 5",
            DOMAINS="plain textured sketch")
        proc = subprocess.run(["bash", "scripts/guidg/dg.sh", "toy", "sketch", "1"],
                              cwd=h.REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, h.describe(proc)
        logs[backend] = {os.path.relpath(p, str(out)): steps_and_evaluations(p)
                         for p in sorted(glob.glob(str(out / "**" / "log.txt"), recursive=True))}
    assert len(logs["builtin"]) == 3 and logs["dassl"] == logs["builtin"]


def steps_and_evaluations(path):
    """The progress lines without their timings and the evaluation lines of a log."""
    rows = []
    for line in h.read_log(path).splitlines():
        if h.PROGRESS_RE.match(line):
            rows.append(re.sub(r" time \S+ \(\S+\) data \S+ \(\S+\)| eta \S+$", "", line))
        elif line.startswith(("* ", "Evaluate on")):
            rows.append(line)
    return rows
