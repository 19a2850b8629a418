"""One run on two processes (``torchrun``, gloo on the CPU) equals one process.

End to end (slow), CoOp, DiSa, CoCoOp, IVLP, MaPLe and PromptSRC train on a
tiny Caltech101 with the tiny CLIP once with ``python train.py`` and once
with ``torchrun --nproc_per_node 2 train.py`` (same global batch
``DATALOADER.TRAIN_X.BATCH_SIZE``: each rank takes half of it): every logged
per-iteration loss term, the last checkpoint's weights and the evaluator
block are the single-process run's; rank 0 alone prints; a killed 2-process
run resumes exactly; ``NPROC=2 bash scripts/coop/base2new.sh`` trains and
tests on 2 processes to the results of ``NPROC=1``. The helpers of :mod:`clipwb.engine.distributed` are checked in
process; a bad launch is one sentence.
"""
import os
import subprocess
import sys

import pytest
import torch

from clipwb.engine import distributed
from clipwb.errors import ConfigError
from clipwb.trainers.kit.resumable import RUN_STATE_FILE
from tests import distributed_kit as dk
from tests import e2e_helpers as h
from tests.distributed_kit import EPOCHS, logged_terms, torchrun

@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_path):
    return dk.toy_world(tmp_path_factory, tiny_clip_path, "ddp")


# The official fp32 arithmetic rounds deep and vision prompts to float16 in
# every forward pass: the 2-process gradient (a mean of two half-batch means)
# differs from the 1-process one in its last float32 bits, and a rounding that
# flips then moves a weight by a float16 step. Without the rounding the runs
# agree to 1e-5.
EXACT = {"IVLP": ["TRAINER.IVLP.PREC", "fp32_exact"],
         "MaPLe": ["TRAINER.MAPLE.PREC", "fp32_exact"]}


def run_args(world, trainer, out):
    # one test image per batch: the 4 test batches are shared by the 2 ranks
    return h.train_args(trainer, world["data"], out, world["clip"], "OPTIM.MAX_EPOCH", EPOCHS,
                        "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.TEST.BATCH_SIZE", 1,
                        *EXACT.get(trainer, []))


def one_and_two(world, trainer):
    """The same run with one process and with two (cached per trainer)."""
    return dk.one_and_two(world["runs"], trainer, lambda out: run_args(world, trainer, out))


@pytest.fixture(scope="module")
def coop_runs(world):
    return one_and_two(world, "CoOp")


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["CoOp", "DiSa", "CoCoOp", "IVLP", "MaPLe", "PromptSRC"])
def test_two_processes_log_the_losses_and_accuracy_of_one(world, trainer):
    one_log, _ = dk.assert_same_run(one_and_two(world, trainer),
                                    steps=EPOCHS * 8 // int(h.TRAINER_OPTS[trainer][1]))
    # 8 base images, global batch 4 (CoCoOp's: 2); 4 test images
    assert h.evaluator_block(one_log)[0] == 4


RESUME_EPOCHS = 4
KILL_AT = "epoch [2/{}] batch [1/".format(RESUME_EPOCHS)


@pytest.mark.slow
@pytest.mark.parametrize("resume_nproc", [2, 1])
def test_a_killed_two_process_run_resumes_exactly(world, resume_nproc):
    """torchrun is sent SIGTERM in epoch 2 (it passes it to both ranks, which
    stop after the same step); the same command (or one process: the run
    state does not depend on the number of processes) then finishes the run
    with the steps and the accuracy of a one-process run never stopped."""
    def args(out):
        return run_args(world, "CoOp", out) + ["OPTIM.MAX_EPOCH", RESUME_EPOCHS]

    ref_dir = str(world["tmp"] / "ref4")
    run_dir = str(world["tmp"] / "killed{}".format(resume_nproc))
    if "ref4" not in world["runs"]:
        world["runs"]["ref4"] = h.run_train_py(args(ref_dir))
    reference = world["runs"]["ref4"]
    assert reference.returncode == 0, h.describe(reference)
    printed, killed = dk.torchrun_stopped_at(args(run_dir), KILL_AT)
    assert killed, printed[-5:]
    assert any(line.startswith("Interrupted in epoch 2 of {}".format(RESUME_EPOCHS))
               for line in printed), printed[-5:]
    assert os.path.isfile(os.path.join(run_dir, RUN_STATE_FILE))
    again = (torchrun(args(run_dir), 2) if resume_nproc == 2
             else h.run_train_py(args(run_dir)))
    assert again.returncode == 0, h.describe(again)
    assert "Found the run state of epoch 1" in again.stdout
    ref_log = h.read_log(os.path.join(ref_dir, "log.txt"))
    resumed_log = h.read_log(h.log_paths(run_dir)[-1])
    ref_steps = [row for row, (epoch, _, _) in zip(logged_terms(ref_log), h.progress(ref_log))
                 if epoch >= 2]
    resumed_steps = logged_terms(resumed_log)
    assert len(resumed_steps) == len(ref_steps) == (RESUME_EPOCHS - 1) * 2
    for a, b in zip(ref_steps, resumed_steps):
        for key in a:
            assert abs(a[key] - b[key]) <= 1e-5, (key, a, b)
    assert h.evaluator_block(resumed_log) == h.evaluator_block(ref_log)


@pytest.mark.slow
def test_the_scripts_launch_nproc_processes(world):
    from tests.test_train_e2e import tiny_yaml

    cfg = tiny_yaml("CoOp", str(world["tmp"] / "tiny_coop.yaml"))
    logs = {}
    for nproc in (1, 2):
        output = str(world["tmp"] / "script{}".format(nproc))
        env = h.subprocess_env(DATA=world["data"], OUTPUT=output, CFG=cfg, SHOTS=4,
                               BACKBONE=world["clip"], NPROC=nproc, PYTHON=sys.executable,
                               OPTS="DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 1")
        proc = subprocess.run(["bash", "scripts/coop/base2new.sh", "caltech101", "1"],
                              cwd=h.REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, h.describe(proc)
        for phase in ("train_base", "test_new"):
            run_dir = os.path.join(output, "base2new", phase, "caltech101", "shots_4", "CoOp",
                                   "tiny_coop", "seed1")
            logs[nproc, phase] = h.read_log(os.path.join(run_dir, "log.txt"))
    spread = "Running on 2 processes (torchrun, gloo backend)"
    assert spread + "; global batch 4, 2 images per process" in logs[2, "train_base"]
    assert spread in logs[2, "test_new"] and spread not in logs[1, "train_base"]
    assert logged_terms(logs[2, "train_base"]) == logged_terms(logs[1, "train_base"])
    assert len(logged_terms(logs[1, "train_base"])) == 4
    for phase in ("train_base", "test_new"):
        assert h.evaluator_block(logs[2, phase]) == h.evaluator_block(logs[1, phase]) is not None


@pytest.mark.slow
def test_rank_zero_alone_prints(coop_runs):
    two = coop_runs["two"]
    out = two.stdout
    assert out.count("Evaluate on the *test* set") == 1
    assert out.count("=> result") == 1
    assert sum(1 for line in out.splitlines() if h.PROGRESS_RE.match(line)) == EPOCHS * 2


@pytest.mark.slow
def test_a_batch_that_does_not_split_is_one_sentence(world):
    out = str(world["tmp"] / "three")
    proc = torchrun(run_args(world, "CoOp", out), 3)
    assert proc.returncode != 0
    sentence = ("Error: DATALOADER.TRAIN_X.BATCH_SIZE 4 is the global batch (the "
                "single-process recipe's) and must split evenly over the 3 processes: use a "
                "--nproc_per_node that divides 4.")
    assert proc.stderr.count(sentence) == 1, proc.stderr
    # (torchrun then reports its failed child with its own traceback)
    assert 'train.py", line' not in proc.stderr
    assert not os.path.exists(out)


def test_slices_cover_the_global_batch_in_order():
    batch = {"img": torch.arange(12).view(6, 2), "label": torch.arange(6),
             "impath": ["a", "b", "c", "d", "e", "f"], "note": "kept"}
    parts = [distributed.slice_batch(batch, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["img"] for p in parts]), batch["img"])
    assert parts[1]["impath"] == ["c", "d"] and parts[2]["label"].tolist() == [4, 5]
    assert all(p["note"] == "kept" for p in parts)


def test_bad_launches_are_one_sentence():
    distributed.check_global_batch(4, world=2)
    with pytest.raises(ConfigError, match=r"starts more processes than the global batch "
                                          r"DATALOADER.TRAIN_X.BATCH_SIZE 4 has images: use at "
                                          r"most 4 processes"):
        distributed.check_global_batch(4, world=8)
    with pytest.raises(ConfigError, match="use a --nproc_per_node that divides 6"):
        distributed.check_global_batch(6, world=4)


def _gloo_work(index):
    # rank r's gradient is (r + 1) * [1, 2, 3]; the mean over 2 ranks is 1.5x
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = (index + 1) * torch.tensor([1.0, 2.0, 3.0])
    other = torch.nn.Parameter(torch.zeros(2, 2))
    other.grad = torch.full((2, 2), float(index))
    distributed.average_gradients([param, other])
    summary = distributed.mean_summary({"loss": 1.0 + index, "acc": 50.0 * index})
    # rank r evaluated the batches r, r + 2, ... of 5 batches
    gathered = distributed.gather_in_order(list(range(index, 5, 2)))
    seeds = (distributed.shared_seed(-1), distributed.shared_seed(7))
    return param.grad.tolist(), other.grad.tolist(), summary, gathered, seeds


def test_gloo_ranks_average_gradients_and_losses_and_gather_in_order():
    got = dk.on_gloo_ranks(_gloo_work)
    assert got[0][-1] == got[1][-1]  # rank 0's drawn seed reached rank 1
    assert got[0][-1][0] >= 0 and got[0][-1][1] == 7
    for grad, other, summary, gathered, _ in got:
        assert grad == [1.5, 3.0, 4.5]
        assert other == [[0.5, 0.5], [0.5, 0.5]]
        assert summary == {"loss": 1.5, "acc": 25.0}
        assert gathered == [0, 1, 2, 3, 4]


def test_every_registered_trainer_runs_on_several_processes():
    """Each of the project's trainer classes in the registry (real Dassl's
    registry also holds Dassl's own) declares itself checked on several
    processes (its own tests compare 2 processes with 1: tests/test_distributed*.py)."""
    from clipwb.engine import TRAINER_REGISTRY

    names = sorted(n for n in TRAINER_REGISTRY.registered_names()
                   if TRAINER_REGISTRY.get(n).__module__.startswith("clipwb."))
    assert {"CoOp", "DiSa", "ISP", "GuiDG", "GuiDGExpert", "ProGrad", "MMRL"} <= set(names)
    assert [n for n in names if not vars(TRAINER_REGISTRY.get(n)).get("torchrun_ready")] == []


def test_a_method_not_checked_on_several_processes_is_refused(monkeypatch):
    """A trainer class that does not itself declare ``torchrun_ready`` (e.g.
    a researcher's subclass adding batch statistics) is refused on several
    processes, not on one, and not for evaluation."""
    from clipwb.engine import TRAINER_REGISTRY

    coop = TRAINER_REGISTRY.get("CoOp")
    mine = type("MyCoOp", (coop,), {})
    distributed.check_launch(mine, "builtin")  # one process: anything goes
    monkeypatch.setenv("WORLD_SIZE", "2")
    distributed.check_launch(coop, "builtin")
    distributed.check_launch(mine, "builtin", training=False)  # evaluation is shared
    with pytest.raises(ConfigError, match=r"^MyCoOp does not run on several processes yet "
                                          r"\(torchrun, WORLD_SIZE 2\): run it with one "
                                          r"process \(python train.py ...\).$"):
        distributed.check_launch(mine, "builtin")
    distributed.check_launch(coop, "dassl")  # real Dassl too, through the trainer kit
    dassl_own = type("Vanilla", (), {"torchrun_ready": True})  # (as real Dassl's trainers)
    with pytest.raises(ConfigError, match=r"^Vanilla is a trainer of the dassl engine without "
                                          r"the project's torchrun layer, so it does not split "
                                          r"the batches over processes \(torchrun, WORLD_SIZE "
                                          r"2\): run it with one process"):
        distributed.check_launch(dassl_own, "dassl", training=False)


def test_the_grid_gives_each_unit_its_gpus_and_nproc():
    from clipwb.errors import UserInputError
    from clipwb.grid import cli, executors

    assert executors.gpu_slots(["0", "1", "2", "3", "4"], 2) == ["0,1", "2,3"]
    assert executors.gpu_slots(["0", "1"], 1) == ["0", "1"]
    assert executors.gpu_slots([], 2) == []  # CPU slots: the ranks share the CPU
    with pytest.raises(UserInputError, match=r"--gpus-per-job 4 needs 4 GPUs, but 2 are given "
                                             r"or visible \(0, 3\)"):
        executors.gpu_slots(["0", "3"], 4)
    base = ["--methods", "coop", "--datasets", "dtd", "--data", "D"]
    assert cli.env_overrides(cli.parse_args(base + ["--gpus-per-job", "2"])) == {
        "DATA": "D", "NPROC": "2"}
    assert cli.env_overrides(cli.parse_args(base)) == {"DATA": "D"}
    with pytest.raises(UserInputError, match="--gpus-per-job 0 must be at least 1"):
        cli.env_overrides(cli.parse_args(base + ["--gpus-per-job", "0"]))
