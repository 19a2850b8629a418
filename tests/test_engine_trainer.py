"""End to end: a toy TrainerX trains, logs, checkpoints, resumes and tests."""
import os
import re

import pytest
import torch

import clipwb.engine
from clipwb.engine import build_trainer, setup_logger
from tests.engine_testkit import logging_to, seed_everything, toy_cfg, write_toy_images

PROGRESS = re.compile(
    r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time \d+\.\d{3} \(\d+\.\d{3}\) "
    r"data \d+\.\d{3} \(\d+\.\d{3}\) loss (\d+\.\d{4}) \((\d+\.\d{4})\) "
    r"acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e[-+]\d\d eta \d+:\d\d:\d\d$")
BLOCK = re.compile(r"=> result\n\* total: 6\n\* correct: \d\n\* accuracy: \d+\.\d%\n"
                   r"\* error: \d+\.\d%\n\* macro_f1: \d+\.\d%\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the toy trainer for 3 epochs with a log file; return paths/log."""
    root = tmp_path_factory.mktemp("data")
    write_toy_images(root)
    out = tmp_path_factory.mktemp("run")
    cfg = toy_cfg(root, out, max_epoch=3)
    seed_everything(cfg.SEED)
    with logging_to(out, setup_logger):
        trainer = build_trainer(cfg)
        trainer.train()
    return root, out, (out / "log.txt").read_text()


def _progress(log):
    return [PROGRESS.match(line) for line in log.splitlines()
            if line.startswith("epoch [")]


def test_progress_lines_and_decreasing_loss(trained):
    _, _, log = trained
    lines = _progress(log)
    assert all(lines), [l for l in log.splitlines() if l.startswith("epoch [")]
    # 18 train images / batch 4 -> 4 batches (drop_last); PRINT_FREQ 2
    assert [(m.group(1), m.group(3)) for m in lines] == [
        (str(e), str(b)) for e in (1, 2, 3) for b in (2, 4)]
    epoch_avg = [float(m.group(6)) for m in lines if m.group(3) == "4"]
    assert epoch_avg[2] < epoch_avg[0]
    assert "Loading trainer: ToyTrainer" in log and "Finish training" in log
    assert "Deploy the last-epoch model" in log and "Elapsed: " in log
    assert "Evaluate on the *test* set" in log
    assert BLOCK.search(log)


def test_checkpoint_files(trained):
    _, out, _ = trained
    folder = out / "linear"
    assert (folder / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-3"]
    ckpt = torch.load(folder / "model.pth.tar-3", weights_only=False)
    assert set(ckpt) == {"state_dict", "epoch", "optimizer", "scheduler",
                         "val_result"}
    assert ckpt["epoch"] == 3 and ckpt["val_result"] is None
    assert (out / "tensorboard").is_dir()


def test_resume_continues_from_checkpoint(trained, tmp_path, capsys):
    root, out, _ = trained
    cfg = toy_cfg(root, tmp_path / "resumed", max_epoch=4,
                  RESUME=str(out), TEST__NO_TEST=True, TRAIN__CHECKPOINT_FREQ=1)
    trainer = build_trainer(cfg)
    trainer.train()
    text = capsys.readouterr().out
    assert trainer.start_epoch == 3
    assert "Found checkpoint at" in text and "Previous epoch: 3" in text
    epochs = {m.group(1) for m in _progress(text)}
    assert epochs == {"4"}
    assert (tmp_path / "resumed" / "linear" / "model.pth.tar-4").is_file()
    # the optimizer / scheduler state came back too
    assert trainer.sched.last_epoch == 4


def test_resume_with_warmup_scheduler(tmp_path, capsys):
    root = tmp_path / "data"
    write_toy_images(root, per_class=(4, 1, 1))
    kw = dict(OPTIM__WARMUP_EPOCH=1, OPTIM__WARMUP_TYPE="constant",
              TEST__NO_TEST=True)
    build_trainer(toy_cfg(root, tmp_path / "w", max_epoch=2, **kw)).train()
    trainer = build_trainer(toy_cfg(root, tmp_path / "w", max_epoch=3, **kw))
    trainer.train()
    assert trainer.start_epoch == 2
    assert "epoch [3/3]" in capsys.readouterr().out


@pytest.mark.skipif(clipwb.engine.BACKEND == "dassl",
                    reason="Dassl's load_model cannot print val_result=None")
def test_load_model_and_test(trained, tmp_path, capsys):
    root, out, _ = trained
    cfg = toy_cfg(root, tmp_path / "eval")
    trainer = build_trainer(cfg)
    trainer.load_model(str(out), epoch=3)
    acc = trainer.test()
    text = capsys.readouterr().out
    assert "Load {} to linear (epoch=3, val_result=None)".format(
        os.path.join(str(out), "linear", "model.pth.tar-3")) in text
    assert BLOCK.search(text)
    assert acc > 50.0  # the learned colours beat chance (33%)
    with pytest.raises(FileNotFoundError, match="model.pth.tar-7"):
        trainer.load_model(str(out), epoch=7)


def test_best_val_model(tmp_path, capsys):
    root = tmp_path / "data"
    write_toy_images(root, per_class=(4, 1, 1))
    cfg = toy_cfg(root, tmp_path / "bv", max_epoch=2, TEST__FINAL_MODEL="best_val")
    build_trainer(cfg).train()
    text = capsys.readouterr().out
    assert "Evaluate on the *val* set" in text
    assert "Deploy the model with the best val performance" in text
    best = torch.load(tmp_path / "bv" / "linear" / "model-best.pth.tar",
                      weights_only=False)
    assert best["val_result"] is not None


def test_cpu_fallback_and_anomaly(tmp_path):
    root = tmp_path / "data"
    write_toy_images(root, per_class=(4, 1, 1))
    trainer = build_trainer(toy_cfg(root, tmp_path / "x", USE_CUDA=True))
    if not torch.cuda.is_available():
        assert trainer.device.type == "cpu"
    with pytest.raises(FloatingPointError):
        trainer.detect_anomaly(torch.tensor(float("nan")))
    assert trainer.get_model_names() == ["linear"]
    assert trainer.get_current_lr() == pytest.approx(0.05)
    trainer.set_model_mode("eval")
    assert not trainer.model.training


def test_simple_net_backbone_head_classifier():
    from clipwb.engine import SimpleNet, get_cfg_default

    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.MODEL.BACKBONE.NAME = "resnet18"
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.MODEL.HEAD.NAME = "mlp"
    cfg.MODEL.HEAD.HIDDEN_LAYERS = (32,)
    net = SimpleNet(cfg, cfg.MODEL, num_classes=5).eval()
    logits, feats = net(torch.rand(2, 3, 32, 32), return_feature=True)
    assert logits.shape == (2, 5) and feats.shape == (2, 32) and net.fdim == 32
    cfg.MODEL.BACKBONE.NAME = "no_such_net"
    with pytest.raises(Exception, match="no_such_net"):
        SimpleNet(cfg, cfg.MODEL, num_classes=5)
