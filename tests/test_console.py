"""The console and the log: every line on disk as it is printed, the setup in
the log only, a short header, a settled ETA, closest-key hints, no
``pkg_resources`` warning."""
import io
import os
import subprocess
import sys

import pytest

from clipwb import runlog
from clipwb.engine import get_cfg_default, setup_logger
from clipwb.engine.progress import MovingEta
from clipwb.errors import ConfigError, closest_keys, friendly_errors
from tests import e2e_helpers as h
from tests.dataset_layouts import write_dataset


@pytest.fixture
def start_logger(tmp_path, monkeypatch):
    """Call it in the test (pytest puts its own stdout back between phases):
    ``sys.stdout`` becomes the engine's Logger over a console buffer."""
    opened = []

    def start():
        console = io.StringIO()
        monkeypatch.setattr(sys, "stdout", console)
        path = setup_logger(str(tmp_path))
        if path is None:  # real Dassl's setup_logger returns nothing
            path = str(tmp_path / "log.txt")
        opened.append(sys.stdout)
        return console, path

    yield start
    for logger in opened:
        logger.file.close()


def test_each_printed_line_is_on_disk_at_once(start_logger):
    console, path = start_logger()
    runlog.line_buffered()
    print("first line")
    with open(path) as f:  # nothing flushed by hand
        assert f.read() == "first line\n"
    runlog.line_buffered()  # a second call changes nothing
    print("second line")
    with open(path) as f:
        assert f.read() == "first line\nsecond line\n"
    assert console.getvalue() == "first line\nsecond line\n"


def test_file_only_and_log_line(start_logger):
    console, path = start_logger()
    runlog.line_buffered()
    with runlog.file_only():
        print("config dump")
    with runlog.file_only(enabled=False):
        print("shown")
    runlog.log_line("Error: something")
    with open(path) as f:
        assert f.read() == "config dump\nshown\nError: something\n"
    assert console.getvalue() == "shown\n"


def test_without_a_logger_nothing_breaks(capsys):
    runlog.line_buffered()
    with runlog.file_only():
        print("plain stdout")
    runlog.log_line("nowhere")
    assert capsys.readouterr().out == "plain stdout\n"


def test_eta_drops_the_first_batch_and_follows_the_recent_ones():
    eta = MovingEta(window=3)
    eta.update(30.0)  # warm-up batch
    assert eta.seconds_left(10) == 300.0  # the only time known so far
    eta.update(1.0)
    assert eta.seconds_left(10) == 10.0  # the warm-up batch is dropped
    for _ in range(3):
        eta.update(2.0)
    assert eta.seconds_left(10) == 20.0  # only the last 3 batches


def test_an_unknown_key_names_the_closest_keys():
    cfg = get_cfg_default()
    assert closest_keys(cfg, "OPTIM.MAX_EPOC")[0] == "OPTIM.MAX_EPOCH"
    assert closest_keys(cfg, "TRAIN.MAX_EPOCH") == ["OPTIM.MAX_EPOCH"]
    with pytest.raises(ConfigError, match=r"OPTIM\.LRR\. Did you mean OPTIM\.LR\b"):
        with friendly_errors("the command-line options", cfg):
            cfg.merge_from_list(["OPTIM.LRR", "0.1"])
    with pytest.raises(ConfigError, match=r"The keys of OPTIM are: .*MAX_EPOCH"):
        with friendly_errors("x.yaml", cfg):
            cfg.merge_from_list(["OPTIM.ZZZZZZZZ", "1"])


def test_no_pkg_resources_warning_on_any_command():
    env = {k: v for k, v in h.subprocess_env().items() if k != "PYTHONWARNINGS"}
    for cmd in (["train.py", "--help"],):  # imports CLIP, the plugin and every trainer
        proc = subprocess.run([sys.executable] + cmd, cwd=h.REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, h.describe(proc)
        assert "pkg_resources" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


def test_console_header_and_verbose(tmp_path, tiny_clip_path):
    """The console gets the short header and the training lines; the config
    and environment dump and the model build are in log.txt (and on the
    console too with --verbose)."""
    data = str(tmp_path / "data")
    write_dataset(data, "Caltech101", n_classes=4)
    runs = {}
    for name, flags in (("quiet", []), ("verbose", ["--verbose"])):
        out = str(tmp_path / name)
        proc = h.run_train_py(h.train_args("CoOp", data, out, tiny_clip_path,
                                           "OPTIM.MAX_EPOCH", 1, flags=flags))
        assert proc.returncode == 0, h.describe(proc)
        runs[name] = (proc.stdout, h.read_log(os.path.join(out, "log.txt")), out)
    quiet, quiet_log, out = runs["quiet"]
    header = [line for line in quiet.splitlines() if line.startswith(("** ", "   "))][:5]
    assert header[0] == "** CoOp on Caltech101 (4 shots, seed 1)"
    assert header[1] == ("   config:  configs/trainers/CoOp/vit_b16_ctxv1.yaml, "
                         "configs/datasets/caltech101.yaml")
    assert header[2] == "   output:  " + out
    assert header[3].startswith("   engine:  ") and "device cpu, precision fp32" in header[3]
    assert header[4].startswith("   log:     " + os.path.join(out, "log.txt"))
    for dumped in ("** Config **", "** System info **", "Building custom CLIP"):
        assert dumped in quiet_log and dumped not in quiet
        assert dumped in runs["verbose"][0]
    assert len(quiet.splitlines()) < 40 < len(runs["verbose"][0].splitlines())
    assert "epoch [1/1]" in quiet and "* accuracy:" in quiet
