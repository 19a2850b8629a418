"""GuiDG trainers on the tiny CLIP and a tiny PACS: the step-2 loss decreases,
a missing expert is a clear error, and scripts/guidg/dg.sh runs both steps
and ends with the evaluator block (experts reused on a second run)."""
import glob
import os
import signal
import subprocess
import sys

import pytest
import torch

from clipwb.engine import build_trainer
from clipwb.errors import MissingFileError
from tests.dg_kit import make_dg_cfg, write_expert
from tests.e2e_helpers import script_python, subprocess_env
from tests.dg_layouts import write_domainbed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    return write_domainbed(tmp_path_factory.mktemp("dg"), "PACS", n_classes=3, n_per_class=10,
                           domains=["art_painting", "cartoon", "photo"])


@pytest.mark.parametrize("name,opts", [
    ("GuiDG", ["TRAINER.GUIDG.BASELINE", "clipood"]),
    ("GuiDG", ["TRAINER.GUIDG.BASELINE", "ueo", "TRAINER.GUIDG.WEIGHTING", "sample"]),
    ("CLIPood", []),
])
def test_step2_loss_decreases_and_weights_are_a_simplex(name, opts, pacs, tiny_clip_path,
                                                         tmp_path):
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    opts = list(opts) + ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
                         "TRAINER.{}.BATCH_PER_DOMAIN".format(name.upper()), "3"]
    torch.manual_seed(0)
    trainer = build_trainer(make_dg_cfg(name, pacs, tiny_clip_path, tmp_path / "out", opts))
    model = trainer.model
    assert model.num_classifiers == (2 if name == "GuiDG" else 1)
    batch = next(iter(trainer.train_loader_x))
    assert batch["domain"].tolist() == [0, 0, 0, 1, 1, 1]
    trainer.batch_idx, trainer.num_batches = 0, 1000
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(6)]
    assert losses[-1] < losses[0]
    features = model.features(batch["img"])
    weights = model.weights(features)
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights.sum(-1)))
    if name != "GuiDG" or "ueo" not in opts:
        assert int(trainer.eval_encoder.num_updates) == 6  # BMA after every step
    logits = trainer.model_inference(batch["img"])
    assert logits.shape == (6, 3)


def test_missing_expert_is_a_clear_error(pacs, tiny_clip_path, tmp_path):
    cfg = make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / "out",
                   ["TRAINER.GUIDG.EXPERT_DIR", str(tmp_path / "none_{domain}")])
    with pytest.raises(MissingFileError, match="No expert prompt for source domain 'art_painting'"):
        build_trainer(cfg)


def test_dg_script_runs_both_steps_and_reuses_experts(pacs, tiny_clip_path, tmp_path):
    env = subprocess_env(**script_python())
    env.update(
        DATA=pacs.root, OUTPUT=str(tmp_path / "output"), SHOTS="2",
        DOMAINS="art_painting cartoon photo", BACKBONE=tiny_clip_path,
        OPTS="INPUT.SIZE '(32, 32)' DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 "
             "TRAINER.GUIDG.BATCH_PER_DOMAIN 2 TRAINER.GUIDG.ITERS_PER_EPOCH 2",
        EXPERT_OPTS="TRAINER.COOP.N_CTX 4 DATALOADER.TRAIN_X.BATCH_SIZE 4 OPTIM.MAX_EPOCH 2")
    cmd = ["bash", os.path.join(REPO, "scripts", "guidg", "dg.sh"), "pacs", "photo", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "output" / "dg" / "pacs" / "shots_2"
    for domain in ("art_painting", "cartoon"):
        expert = out / "GuiDGExpert" / "vit_b16_c16_ep31" / ("expert_" + domain) / "seed1"
        assert (expert / "prompt_learner" / "model-best.pth.tar").is_file()
    run = out / "GuiDG" / "vit_b16_clipood" / "photo" / "seed1"
    log = (run / "log.txt").read_text()
    tail = log[log.rindex("=> result"):].splitlines()
    assert [line.split(":")[0] for line in tail[:6]] == [
        "=> result", "* total", "* correct", "* accuracy", "* error", "* macro_f1"]
    assert "* total: 6" in tail  # 20% of 10 images x 3 classes of the target
    assert "Expert of cartoon" in log
    assert (run / "model" / "model.pth.tar-1").is_file()
    assert (run / "eval_encoder" / "model.pth.tar-1").is_file()
    assert "Domain generalization: pacs" in proc.stdout and "CLIPood + GuiDG (published)" in proc.stdout
    # the table says what made the row, from the run's own config dump
    assert "GuiDG / vit_b16_clipood / 2 shots: preset ours, BMA beta 0.1" in proc.stdout

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("Reusing the expert of") == 2
    assert "The results exist at" in again.stdout


@pytest.mark.slow
def test_an_expert_killed_in_epoch_3_is_resumed_not_reused(pacs, tiny_clip_path, tmp_path):
    """SIGKILL of the job (bash and the expert's train.py) in the expert's
    epoch 3: its model-best.pth.tar (first validation) and run_state.pth are
    there; the same command resumes that expert from the run state instead of
    taking it as done, then trains the others and step 2."""
    settings = dict(
        DATA=pacs.root, OUTPUT=str(tmp_path / "output"), SHOTS="2",
        DOMAINS="art_painting cartoon photo", BACKBONE=tiny_clip_path,
        OPTS="INPUT.SIZE '(32, 32)' DATALOADER.NUM_WORKERS 0 OPTIM.MAX_EPOCH 1 "
             "TRAINER.GUIDG.BATCH_PER_DOMAIN 2 TRAINER.GUIDG.ITERS_PER_EPOCH 2",
        EXPERT_OPTS="TRAINER.COOP.N_CTX 4 DATALOADER.TRAIN_X.BATCH_SIZE 4 OPTIM.MAX_EPOCH 4 "
                    "TRAIN.PRINT_FREQ 1")
    cmd = ["bash", os.path.join(REPO, "scripts", "guidg", "dg.sh"), "pacs", "photo", "1"]
    # the real interpreter: killing the job's process group reaches train.py
    job = subprocess.Popen(cmd, env=subprocess_env(PYTHON=sys.executable, **settings), cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    printed = []
    for line in job.stdout:
        printed.append(line)
        if line.startswith("epoch [3/4] batch [1/"):
            os.killpg(job.pid, signal.SIGKILL)
            break
    job.wait(timeout=120)
    assert job.returncode == -signal.SIGKILL, "".join(printed[-20:])
    expert = os.path.join(str(tmp_path), "output", "dg", "pacs", "shots_2", "GuiDGExpert",
                          "vit_b16_c16_ep31", "expert_art_painting", "seed1")
    assert os.path.isfile(os.path.join(expert, "prompt_learner", "model-best.pth.tar"))
    assert os.path.isfile(os.path.join(expert, "run_state.pth"))

    env = subprocess_env(**script_python())
    env.update(settings)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Reusing the expert of art_painting" not in again.stdout
    assert "the expert of art_painting in {} is unfinished: resuming it".format(
        expert) in again.stdout
    resumed_log = sorted(glob.glob(os.path.join(expert, "log.txt-*")))[-1]
    with open(resumed_log) as f:
        log = f.read()
    assert "Found the run state of epoch 2" in log
    assert "epoch [4/4]" in log and "epoch [3/4]" in log and "epoch [2/4]" not in log
    assert "* accuracy:" in log
    assert os.path.isfile(os.path.join(expert, "prompt_learner", "model.pth.tar-4"))
    assert not os.path.exists(os.path.join(expert, "run_state.pth"))
