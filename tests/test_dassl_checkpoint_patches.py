"""clipwb.engine.compat's checkpoint patches reach every reference to Dassl's
functions, on a Dassl-shaped package (real Dassl is not installed in CI).

The package written here has Dassl 0.6.3's checkpoint functions in shape:
``load_checkpoint`` calls ``torch.load(fpath, map_location=...)`` (so torch
>= 2.6 refuses a checkpoint holding a scheduler object), ``save_checkpoint``
writes the epoch file in place, then the ``checkpoint`` pointer file with
``open``, then copies the best file with ``shutil.copy``. A host trainer
module imports the names before the patches are applied, as a CoOp-family
checkout does before it imports the plugin; everything runs in a child
Python (``DASSL_BACKEND=builtin``, so the facade itself stays on the
built-in engine while compat patches the package on the path).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.e2e_helpers import REPO, subprocess_env

DASSL_LOOKALIKE = {
    "dassl/__init__.py": '__version__ = "0.6.3"\n',
    "dassl/utils/__init__.py": "from .torchtools import *  # noqa\n",
    "dassl/utils/torchtools.py": '''
        """Checkpoint files, shaped as Dassl 0.6.3's (module globals torch, shutil, open)."""
        import os
        import os.path as osp
        import shutil

        import torch

        __all__ = ["save_checkpoint", "load_checkpoint", "resume_from_checkpoint"]


        def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True,
                            model_name=""):
            os.makedirs(save_dir, exist_ok=True)
            fpath = osp.join(save_dir, model_name or "model.pth.tar-" + str(state["epoch"]))
            torch.save(state, fpath)
            pointer = open(osp.join(save_dir, "checkpoint"), "w+")
            pointer.write("{}\\n".format(osp.basename(fpath)))
            pointer.close()
            if is_best:
                shutil.copy(fpath, osp.join(save_dir, "model-best.pth.tar"))


        def load_checkpoint(fpath):
            map_location = None if torch.cuda.is_available() else "cpu"
            return torch.load(fpath, map_location=map_location)


        def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
            with open(osp.join(fdir, "checkpoint"), "r") as f:
                name = f.readlines()[0].strip("\\n")
            checkpoint = load_checkpoint(osp.join(fdir, name))
            model.load_state_dict(checkpoint["state_dict"])
            return checkpoint["epoch"]
        ''',
    "dassl/optim/__init__.py": "",
    "dassl/optim/lr_scheduler.py": '''
        from torch.optim.lr_scheduler import LRScheduler


        class _BaseWarmupScheduler(LRScheduler):
            def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
                self.successor = successor
                self.warmup_epoch = warmup_epoch
                super().__init__(optimizer, last_epoch, verbose)
        ''',
    "dassl/data/__init__.py": "",
    "dassl/data/transforms/__init__.py": "",
    "dassl/data/transforms/randaugment.py": "import numpy as np  # noqa\n",
    "dassl/data/transforms/autoaugment.py": "import numpy as np  # noqa\n",
    # a CoOp-family trainer module: it holds its own references
    "host_trainer.py": "from dassl.utils import load_checkpoint, save_checkpoint  # noqa\n",
}

CHILD = '''
import errno, json, os, sys
import torch

import host_trainer  # imports Dassl's names before the plugin patches them
from clipwb.engine import compat

folder = sys.argv[1]
report = {"applied": compat.apply(), "applied_again": compat.apply()}


def attempt(name, step):
    try:
        report[name] = step()
    except BaseException as err:  # noqa: B902 - recorded for the test to read
        report[name] = "{}: {}".format(type(err).__name__, (str(err).splitlines() or [""])[0])


def files():
    return {n: open(os.path.join(folder, n), "rb").read().hex() for n in sorted(os.listdir(folder))}


layer = torch.nn.Linear(2, 2)
optim = torch.optim.SGD(layer.parameters(), lr=0.1)
cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 10)


def state(epoch):
    # a warmup scheduler's state pickles its successor object
    return {"state_dict": layer.state_dict(), "epoch": epoch, "optimizer": optim.state_dict(),
            "scheduler": {"successor": cosine, "warmup_epoch": 1}}


attempt("saved", lambda: host_trainer.save_checkpoint(state(1), folder, is_best=True) or files())
attempt("loaded", lambda: type(host_trainer.load_checkpoint(
    os.path.join(folder, "model.pth.tar-1"))["scheduler"]["successor"]).__name__)

real_save = torch.save


def cut(error):
    def save(obj, f, *args, **kwargs):
        target = open(f, "wb") if isinstance(f, str) else f
        target.write(b"half a checkpoint")
        target.flush()
        raise error
    return save


torch.save = cut(KeyboardInterrupt())
attempt("killed", lambda: host_trainer.save_checkpoint(state(2), folder))
report["after_kill"] = files()
torch.save = cut(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
attempt("full_disk", lambda: host_trainer.save_checkpoint(state(2), folder))
report["after_full_disk"] = files()
torch.save = real_save
print("REPORT " + json.dumps(report))
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    site = tmp_path_factory.mktemp("dassl_lookalike")
    for rel, text in DASSL_LOOKALIKE.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    folder = tmp_path_factory.mktemp("checkpoints") / "prompt_learner"
    env = subprocess_env(DASSL_BACKEND="builtin",
                         PYTHONPATH=os.pathsep.join([str(site), REPO]))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


def test_the_patches_apply_once(report):
    assert "checkpoint_weights_only" in report["applied"]
    assert "atomic_checkpoints" in report["applied"]
    assert report["applied_again"] == []


def test_a_trainers_own_load_checkpoint_reference_loads_a_scheduler_object(report):
    """torch >= 2.6 refuses the file with weights_only=True (the default)."""
    assert report["loaded"] == "CosineAnnealingLR"


def test_dassls_save_checkpoint_writes_dassls_files(report):
    saved = report["saved"]
    assert sorted(saved) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-1"]
    assert bytes.fromhex(saved["checkpoint"]) == b"model.pth.tar-1\n"
    assert saved["model-best.pth.tar"] == saved["model.pth.tar-1"]


def test_a_kill_during_dassls_save_leaves_the_previous_files(report):
    assert report["killed"].startswith("KeyboardInterrupt")
    assert report["after_kill"] == report["saved"]  # no half model.pth.tar-2, no .tmp


def test_a_full_disk_during_dassls_save_is_one_sentence(report):
    assert report["full_disk"].startswith(
        "DiskFullError: No space left on the device (disk full or quota reached) to write \"")
    assert report["full_disk"].endswith(
        'model.pth.tar-2": free some space and run the same command again, the run resumes '
        "from its last saved state.")
    assert report["after_full_disk"] == report["saved"]
