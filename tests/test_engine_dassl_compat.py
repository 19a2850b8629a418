"""Real Dassl 0.6.3 through the facade, with clipwb.engine.compat's three patches.

Skipped unless ``dassl`` imports (it is not installed system-wide; run these
with a Python that has Dassl, e.g. a separate virtualenv).
"""
import os
import re
import subprocess
import sys

import pytest

dassl = pytest.importorskip("dassl")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from clipwb.engine import compat  # noqa: E402
from tests.engine_testkit import toy_cfg, write_toy_images  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def patched():
    compat.apply()


def test_apply_is_idempotent():
    assert compat.apply() == []
    from dassl.utils import torchtools
    import dassl.engine.trainer as dassl_trainer

    assert dassl_trainer.load_checkpoint is torchtools.load_checkpoint


def test_warmup_scheduler_builds_and_steps():
    from dassl.config import get_cfg_default
    from dassl.optim import build_lr_scheduler

    cfg = get_cfg_default()
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.MAX_EPOCH = 4
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-5, 0.1, 0.1 * 0.5 * (1 + 0.7071067811865476)])


def test_checkpoint_resume_and_load_model(tmp_path, capsys):
    import clipwb.engine
    from clipwb.engine import build_trainer

    if clipwb.engine.BACKEND != "dassl":
        pytest.skip("DASSL_BACKEND forces the built-in engine")
    root = tmp_path / "data"
    write_toy_images(root, per_class=(4, 1, 1))
    # warmup: Dassl pickles the successor scheduler object into the file
    kw = dict(OPTIM__WARMUP_EPOCH=1, OPTIM__WARMUP_TYPE="linear",
              TEST__FINAL_MODEL="best_val")
    build_trainer(toy_cfg(root, tmp_path / "run", max_epoch=2, **kw)).train()
    trainer = build_trainer(toy_cfg(root, tmp_path / "run", max_epoch=3, **kw))
    trainer.train()
    out = capsys.readouterr().out
    assert trainer.start_epoch == 2 and "Loaded scheduler" in out
    assert "epoch [3/3]" in out and "epoch [1/3]" not in out
    fresh = build_trainer(toy_cfg(root, tmp_path / "eval", **kw))
    fresh.load_model(str(tmp_path / "run"))  # model-best.pth.tar
    assert "Load " in capsys.readouterr().out
    assert fresh.test() > 0


def test_randaugment_and_policies_run(tmp_path):
    from dassl.config import get_cfg_default
    from dassl.data.transforms import build_transform
    from dassl.data.transforms.randaugment import SolarizeAdd

    img = Image.new("RGB", (32, 32), (120, 60, 200))
    assert SolarizeAdd(img, 20).size == (32, 32)  # uses np.int
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (32, 32)
    for choice in ("randaugment", "randaugment_fixmatch", "randaugment2",
                   "imagenet_policy", "cifar10_policy", "svhn_policy"):
        tfm = build_transform(cfg, is_train=True, choices=[choice])
        for _ in range(10):
            assert tfm(img).shape == (3, 32, 32), choice


_RUN = """
import re, sys
from tests.engine_testkit import toy_cfg, write_toy_images, seed_everything
import clipwb.engine
from clipwb.engine import build_trainer
root, out = sys.argv[1], sys.argv[2]
write_toy_images(root)
cfg = toy_cfg(root, out, max_epoch=2, OPTIM__WARMUP_EPOCH=1,
              OPTIM__WARMUP_TYPE="constant", OPTIM__LR=0.01)
seed_everything(cfg.SEED)
t = build_trainer(cfg)
t.train()
print("BACKEND", clipwb.engine.BACKEND)
"""


def _run(backend, tmp_path):
    env = dict(os.environ, DASSL_BACKEND=backend)
    res = subprocess.run(
        [sys.executable, "-c", _RUN, str(tmp_path / "data"),
         str(tmp_path / backend)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "BACKEND " + backend in res.stdout
    losses = re.findall(r"loss (\d+\.\d{4}) \((\d+\.\d{4})\)", res.stdout)
    accuracy = re.findall(r"\* accuracy: (\d+\.\d)%", res.stdout)
    return losses, accuracy


def test_same_results_on_both_engines(tmp_path):
    dassl_losses, dassl_acc = _run("dassl", tmp_path)
    builtin_losses, builtin_acc = _run("builtin", tmp_path)
    assert dassl_losses and dassl_acc
    assert builtin_losses == dassl_losses
    assert builtin_acc == dassl_acc


def test_the_plugin_leaves_dassls_image_reader_alone_and_train_py_replaces_it():
    """(d) changes Dassl's behaviour, so a host checkout's process that imports
    the plugin keeps Dassl's own reader; this repository's train.py takes ours."""
    code = ("import dassl.data.data_manager as dm, dassl.utils as du\n"
            "import clipwb.plugin\n"
            "print('plugin', dm.read_image is du.read_image)\n"
            "import train\n"
            "print('train', dm.read_image is du.read_image)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "plugin True" in proc.stdout and "train False" in proc.stdout
