"""Logger, file helpers, checkpoints, meters and backend selection."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from PIL import Image

import clipwb.engine
from clipwb.engine import (AverageMeter, MetricMeter, check_isfile, collect_env_info,
                    count_num_param, listdir_nohidden, load_checkpoint,
                    load_pretrained_weights, mkdir_if_missing, read_image,
                    read_json, resume_from_checkpoint, save_checkpoint,
                    set_random_seed, setup_logger, write_json)
from clipwb.errors import UserInputError
from tests.engine_testkit import logging_to

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_logger_tees_and_never_overwrites(tmp_path):
    with logging_to(tmp_path, setup_logger):
        print("first run")
    log = tmp_path / "log.txt"
    assert log.read_text() == "first run\n"
    with logging_to(tmp_path, setup_logger):
        print("second run")
    assert log.read_text() == "first run\n"  # untouched
    others = [p for p in os.listdir(tmp_path) if p.startswith("log.txt-")]
    assert len(others) == 1
    assert (tmp_path / others[0]).read_text() == "second run\n"
    with logging_to(tmp_path / "custom.log", setup_logger):
        print("named file")
    assert (tmp_path / "custom.log").read_text() == "named file\n"


def test_json_dirs_and_listing(tmp_path):
    target = tmp_path / "a" / "b" / "x.json"
    write_json({"train": [["img.jpg", 0, "cat"]]}, str(target))
    assert read_json(str(target)) == {"train": [["img.jpg", 0, "cat"]]}
    mkdir_if_missing(str(tmp_path / "c" / "d"))
    (tmp_path / "c" / ".hidden").write_text("")
    (tmp_path / "c" / "z").write_text("")
    assert listdir_nohidden(str(tmp_path / "c"), sort=True) == ["d", "z"]
    with pytest.warns(UserWarning):
        assert check_isfile(str(tmp_path / "none")) is False
    assert check_isfile(str(target)) is True
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(str(tmp_path / "missing.json"))


def test_read_image(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (4, 5)).save(path)
    img = read_image(str(path))
    assert img.mode == "RGB" and img.size == (4, 5)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(Exception, match="broken.jpg"):
        read_image(str(broken))
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        read_image(str(tmp_path / "absent.jpg"))


def test_checkpoint_save_resume_and_errors(tmp_path, capsys):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"state_dict": {"module." + k: v for k, v in model.state_dict().items()},
             "epoch": 4, "optimizer": opt.state_dict(), "scheduler": None,
             "val_result": None}
    save_checkpoint(state, str(tmp_path / "m"), is_best=True)
    out = capsys.readouterr().out
    assert "Checkpoint saved to" in out and "model.pth.tar-4" in out
    assert (tmp_path / "m" / "model.pth.tar-4").is_file()
    assert (tmp_path / "m" / "model-best.pth.tar").is_file()
    assert (tmp_path / "m" / "checkpoint").read_text() == "model.pth.tar-4\n"
    loaded = load_checkpoint(str(tmp_path / "m" / "model.pth.tar-4"))
    assert "weight" in loaded["state_dict"]  # "module." removed
    fresh = nn.Linear(3, 2)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    assert resume_from_checkpoint(str(tmp_path / "m"), fresh, fresh_opt) == 4
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"]  # momentum buffers restored
    if clipwb.engine.BACKEND == "builtin":  # a checkpoint of another layout: one clear error
        saved = (tmp_path / "m" / "model.pth.tar-4").read_bytes()
        wider = nn.Linear(3, 5)
        with pytest.raises(UserInputError, match=r"Cannot resume from .*model.pth.tar-4.*"
                                                 r"new --output-dir"):
            resume_from_checkpoint(str(tmp_path / "m"), wider,
                                   torch.optim.SGD(wider.parameters(), lr=0.1))
        same = nn.Linear(3, 2)
        split = torch.optim.SGD([{"params": [same.weight]}, {"params": [same.bias]}], lr=0.1)
        with pytest.raises(UserInputError, match="does not fit this model or optimizer"):
            resume_from_checkpoint(str(tmp_path / "m"), same, split)
        assert (tmp_path / "m" / "model.pth.tar-4").read_bytes() == saved
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_checkpoint(str(tmp_path / "nothing.pth"))
    corrupt = tmp_path / "m" / "model.pth.tar-9"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(Exception, match="model.pth.tar-9"):
        load_checkpoint(str(corrupt))


def test_trainer_files_with_objects_still_load(tmp_path):
    # Real Dassl's warmup scheduler pickles a scheduler object into the file.
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    folder = tmp_path / "prompt_learner"
    folder.mkdir()
    torch.save({"state_dict": {}, "epoch": 1, "scheduler": {"successor": sched}},
               folder / "model.pth.tar-1")
    assert load_checkpoint(str(folder / "model.pth.tar-1"))["epoch"] == 1
    if clipwb.engine.BACKEND == "builtin":  # an arbitrary file stays weights-only
        torch.save({"obj": sched}, tmp_path / "other.pt")
        with pytest.raises(Exception, match="other.pt"):
            load_checkpoint(str(tmp_path / "other.pt"))


def test_load_pretrained_weights_partial(tmp_path, capsys):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pth")
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))  # head differs
    load_pretrained_weights(dst, str(tmp_path / "w.pth"))
    assert torch.equal(dst[0].weight, src[0].weight)
    out = capsys.readouterr().out
    assert "Successfully loaded pretrained weights" in out and "1.weight" in out
    assert count_num_param(dst) == 3 * 4 + 4 + 4 * 5 + 5
    assert count_num_param(params=list(src[0].parameters())) == 16


def test_meters_and_seed():
    meter = AverageMeter()
    meter.update(2.0, n=2)
    meter.update(torch.tensor(5.0))
    assert meter.val == 5.0 and meter.avg == pytest.approx(3.0)
    metrics = MetricMeter()
    metrics.update({"loss": 1.0, "acc": torch.tensor(50.0)})
    metrics.update({"loss": 3.0, "acc": 70.0})
    assert str(metrics) == "loss 3.0000 (2.0000) acc 70.0000 (60.0000)"
    with pytest.raises(TypeError):
        metrics.update([1])
    set_random_seed(3)
    a = torch.rand(2)
    set_random_seed(3)
    assert torch.equal(a, torch.rand(2))


def test_collect_env_info_offline():
    info = collect_env_info()
    assert "PyTorch" in info and "Pillow" in info


def _import_engine(backend):
    env = dict(os.environ, DASSL_BACKEND=backend)
    return subprocess.run(
        [sys.executable, "-c", "import clipwb.engine as e; print(e.BACKEND)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_backend_env_var():
    res = _import_engine("builtin")
    assert res.returncode == 0 and res.stdout.strip() == "builtin"
    res = _import_engine("nonsense")
    assert res.returncode != 0 and "DASSL_BACKEND" in res.stderr
    try:
        import dassl  # noqa: F401
        has_dassl = True
    except ImportError:
        has_dassl = False
    res = _import_engine("dassl")
    if has_dassl:
        assert res.stdout.strip() == "dassl"
    else:
        assert res.returncode != 0
        assert "pip install" in res.stderr and "Dassl" in res.stderr
