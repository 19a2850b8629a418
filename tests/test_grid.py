"""The grid runner (python -m scripts.grid): the scripts' jobs through submitit.

The local executor runs a real toy-world grid (the zero-shot CLIP and CoOp x
seeds 1 and 2, 1 epoch, 2 shots) two jobs at a time; one unit's train is already finished
(skipped) and its checkpoint is damaged, so its test fails. The Slurm path is
checked on the job array submitit writes, with stand-ins for sbatch / srun.
A grid interrupted (SIGINT / SIGTERM) while CoOp trains stops its job, the
script and train.py before it ends, with one line; a unit whose folder a
live process writes is not started.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from clipwb.grid import cli
from tests.e2e_helpers import REPO, params, script_python, subprocess_env

SETTINGS = ["--shots", "2", "--opts", "OPTIM.MAX_EPOCH 1"]
GRID = ["--methods", "zsclip", "coop", "--datasets", "toy", "--seeds", "1", "2"]


def b2n_dir(output, phase, trainer, seed):
    """scripts/common.sh's b2n_dir for the toy world, 2 shots (its toy.yaml config)."""
    return os.path.join(output, "base2new", phase, "toy", "shots_2", trainer, "toy",
                        "seed{}".format(seed))


@pytest.fixture
def script_env(monkeypatch, toy_data):
    """What a user's shell holds for the scripts: DATA, and a one-thread CPU run."""
    for var in ("TRAINER", "CFG", "SHOTS", "OPTS", "BACKBONE", "LOADEP", "OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATA", toy_data)
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")


def grid(*argv):
    lines = []
    code = cli.main(list(argv), repo=REPO, echo=lambda s="": lines.extend(str(s).splitlines()))
    return code, lines


def test_dry_run_lists_the_scripts_jobs_and_their_folders(script_env, tmp_path):
    out = str(tmp_path / "output")
    code, lines = grid(*GRID, "--output", out, "--dry-run", *SETTINGS)
    assert code == 0
    assert lines[0] == "8 job(s): 8 to run, 0 finished"
    expected = []
    for method, trainer in (("zsclip", "ZeroshotCLIP"), ("coop", "CoOp")):
        for seed in (1, 2):
            for job, phase in (("train", "train_base"), ("test", "test_new")):
                expected.append("  [todo] {:<40} {}".format(
                    "bash scripts/{}/base2new_{}.sh toy {}".format(method, job, seed),
                    b2n_dir(out, phase, trainer, seed)))
    assert lines[1:] == expected
    assert not os.path.exists(out)  # a dry run writes nothing
    # --tag: every job in a variant folder of that name, below the config's
    code, lines = grid(*GRID, "--output", out, "--dry-run", "--tag", "b32", *SETTINGS)
    assert code == 0 and lines[1:] == [
        line.replace(os.sep + "toy" + os.sep + "seed", os.sep + "toy" + os.sep + "b32" + os.sep
                     + "seed") for line in expected]


def test_unknown_method_or_dataset_is_one_sentence(script_env, capsys):
    assert cli.run(["--methods", "dissa", "--datasets", "toy", "--dry-run"], repo=REPO) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --methods dissa: no scripts/<method>/base2new_train.sh for "
                          "dissa; choose from ") and err.count("\n") == 1
    assert cli.run(["--methods", "disa", "--datasets", "nope", "--dry-run"], repo=REPO) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bash scripts/disa/base2new_train.sh nope 1 cannot run: dataset "
                          "config configs/datasets/nope.yaml not found") and err.count("\n") == 1


@pytest.mark.slow
def test_local_grid_runs_in_parallel_skips_reports_the_failure_and_prints_the_table(
        script_env, tmp_path):
    out = str(tmp_path / "output")
    # CoOp seed 2: a finished train run (accuracy line, final checkpoint) whose
    # checkpoint is damaged: the grid skips the train, the test fails
    done = b2n_dir(out, "train_base", "CoOp", 2)
    os.makedirs(os.path.join(done, "prompt_learner"))
    with open(os.path.join(done, "prompt_learner", "model.pth.tar-1"), "w") as f:
        f.write("not a checkpoint")
    with open(os.path.join(done, "log.txt"), "w") as f:
        f.write("=> result\n* total: 10\n* correct: 8\n* accuracy: 80.0%\n")

    code, lines = grid(*GRID, "--output", out, "--executor", "local", "--jobs", "2", *SETTINGS)
    text = "\n".join(lines)
    assert code == 1, text
    assert lines[0] == "8 job(s): 7 to run, 1 finished"
    assert "  [done] bash scripts/coop/base2new_train.sh toy 2" in text
    # two jobs at a time: the first two units start before any ends
    events = [l.split(" (")[0] for l in lines if l.startswith(("started", "finished", "FAILED"))]
    assert events[:2] == ["started zsclip/toy/seed1", "started zsclip/toy/seed2"], events
    # the failing unit: its test log holds the error; the others finished
    test_dir = b2n_dir(out, "test_new", "CoOp", 2)
    failed = [l for l in lines if l.startswith("FAILED coop/toy/seed2: ")]
    assert len(failed) == 1, text
    assert failed[0].startswith("FAILED coop/toy/seed2: test_new failed (exit ")
    assert "its log: {}".format(os.path.join(test_dir, "log.txt")) in failed[0]
    job_log = re.search(r"\(job log: (\S+)\)$", failed[0]).group(1)
    assert os.path.isfile(job_log) and "base2new_test.sh toy 2" in open(job_log).read()
    assert "Error:" in open(os.path.join(test_dir, "log.txt")).read()
    assert sum(l.startswith("FAILED") for l in lines) == 2  # the event and the report
    from tests.e2e_helpers import results

    acc = {}
    for trainer, seed in (("ZeroshotCLIP", 1), ("ZeroshotCLIP", 2), ("CoOp", 1)):
        for phase in ("train_base", "test_new"):
            acc[trainer, seed, phase] = results.parse_accuracy(
                os.path.join(b2n_dir(out, phase, trainer, seed), "log.txt"))
            assert acc[trainer, seed, phase] is not None, (trainer, seed, phase)
    # the results.py table ends the run: the zero-shot CLIP over both seeds,
    # CoOp's base over both (seed 2's is the finished run above), its novel
    # over seed 1; the failed test is listed
    acc["CoOp", 2, "train_base"] = 80.0
    for trainer, base_seeds, new_seeds, label in (("ZeroshotCLIP", (1, 2), (1, 2), "1,2"),
                                                  ("CoOp", (1, 2), (1,), "B:1,2 N:1")):
        # (the toy configs' label: their backbone, the toy CLIP)
        row = re.search(r"^{} / toy CLIP backbone \(toy\.yaml\) / 2 shots\s+([\d.]+) ± [\d.]+"
                        r"\s+([\d.]+) ± [\d.]+\s+[\d.]+\s+{}$".format(trainer, re.escape(label)),
                        text, re.M)
        assert row, text
        for group, phase, seeds in ((1, "train_base", base_seeds), (2, "test_new", new_seeds)):
            mean = sum(acc[trainer, s, phase] for s in seeds) / len(seeds)
            assert float(row.group(group)) == pytest.approx(mean, abs=0.01)
    assert "Unfinished or failed runs" in text and test_dir in text

    # the same command again plans only the failed job
    code, lines = grid(*GRID, "--output", out, "--dry-run", *SETTINGS)
    assert lines[0] == "8 job(s): 1 to run, 7 finished"
    assert [l for l in lines if l.startswith("  [todo]")] == [
        "  [todo] {:<40} {}".format("bash scripts/coop/base2new_test.sh toy 2", test_dir)]


FAKE_SBATCH = """#!/bin/bash
cp "$1" "{copy}"
echo "Submitted batch job 4242"
"""


def test_slurm_array_script(script_env, tmp_path, monkeypatch):
    from submitit.core.utils import DelayedSubmission

    from clipwb.grid.plan import run_unit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    copy = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(copy=copy))
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 0\n")
    for tool in ("sbatch", "srun"):
        os.chmod(str(bin_dir / tool), 0o755)
    config = tmp_path / "slurm.yaml"
    config.write_text("partition: gpu\ntime: 600\nmem: 32G\n"
                      "setup: ['module load cuda', 'source venv/bin/activate']\n")
    out, logs = str(tmp_path / "output"), str(tmp_path / "logs")

    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ["PATH"]]))
    code, lines = grid(*GRID, "--output", out, "--executor", "slurm", "--slurm-config",
                       str(config), "--time", "90", "--max-parallel", "2", "--no-wait",
                       "--log-dir", logs, *SETTINGS)
    assert code == 0, lines
    assert lines[-1] == "submitted 4 job(s) as Slurm array 4242 (logs in {})".format(logs)
    script = copy.read_text()
    header = [l for l in script.splitlines() if l.startswith("#SBATCH")]
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --time=90",
                 "#SBATCH --mem=32G", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --job-name=clipwb-grid",
                 "#SBATCH --output={}/%A_%a_0_log.out".format(logs)):
        assert line in header, header
    assert "module load cuda\nsource venv/bin/activate\n" in script
    assert re.search(r"^srun .* -m submitit\.core\._submit {}$".format(re.escape(logs)),
                     script, re.M)
    proc = subprocess.run(["bash", "-n", str(copy)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # each array task unpickles to run_unit on one unit of the grid, in order
    names = []
    for task in range(4):
        job = DelayedSubmission.load(os.path.join(logs, "4242_{}_submitted.pkl".format(task)))
        unit, env = job.args
        assert job.function is run_unit
        assert env == {"OUTPUT": out, "SHOTS": "2", "OPTS": "OPTIM.MAX_EPOCH 1"}
        names.append(unit.name)
        assert [s.command[1:] for s in unit.steps] == [
            [os.path.join(REPO, "scripts", unit.steps[0].method, "base2new_{}.sh".format(j)),
             "toy", str(unit.steps[0].seed)] for j in ("train", "test")]
    assert names == ["zsclip/toy/seed1", "zsclip/toy/seed2", "coop/toy/seed1", "coop/toy/seed2"]


def test_slurm_without_a_cluster_is_one_sentence(script_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    assert cli.run(GRID + ["--executor", "slurm"], repo=REPO) == 2
    assert capsys.readouterr().err == (
        "error: --executor slurm needs sbatch and srun on PATH: run the grid on a machine of "
        "the Slurm cluster (a login node).\n")


def hold_lock(run_dir):
    """A live process standing for a run that writes ``run_dir`` (its lock)."""
    os.makedirs(run_dir, exist_ok=True)
    writer = subprocess.Popen(["sleep", "300"])
    host = socket.gethostname()  # as bash's HOSTNAME
    with open(os.path.join(run_dir, "run.lock"), "w") as f:
        f.write("{} {}\n".format(writer.pid, host))
    return writer, host


def test_a_unit_whose_folder_a_live_process_writes_is_not_started(script_env, tmp_path):
    out = str(tmp_path / "output")
    train = b2n_dir(out, "train_base", "ZeroshotCLIP", 1)
    writer, host = hold_lock(train)
    try:
        code, lines = grid("--methods", "zsclip", "--datasets", "toy", "--seeds", "1", "--output",
                           out, "--gpus", "none", *SETTINGS)
    finally:
        writer.kill()
        writer.wait()
    assert code == 1, lines
    assert lines[:2] == ["2 job(s): 2 to run, 0 finished", "  [busy] {:<40} {}".format(
        "bash scripts/zsclip/base2new_train.sh toy 1", train)]
    assert not any(line.startswith("started") for line in lines)
    assert ("NOT STARTED zsclip/toy/seed1: {} is being written by process {} on {} (its lock "
            "file {}): wait for that run to end or stop it (delete the lock file only if no such "
            "process runs)".format(train, writer.pid, host, os.path.join(train, "run.lock"))
            in lines)
    assert sorted(os.listdir(train)) == ["run.lock"]  # nothing written beside it


@pytest.mark.parametrize("signum", params([signal.SIGINT, signal.SIGTERM],
                                          slow=[signal.SIGTERM]))
def test_an_interrupted_grid_stops_its_jobs_and_says_so(toy_data, tmp_path, monkeypatch,
                                                         signum):
    out = str(tmp_path / "output")
    env = subprocess_env(DATA=toy_data, **script_python())
    grid_proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.grid", "--methods", "coop", "--datasets", "toy",
         "--seeds", "1", "--output", out, "--gpus", "none", "--shots", "2",
         "--opts", "OPTIM.MAX_EPOCH 500 TRAIN.PRINT_FREQ 1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    train = b2n_dir(out, "train_base", "CoOp", 1)
    log = os.path.join(train, "log.txt")
    try:
        # wait until train.py trains (a progress line in its log), the lock held
        deadline = time.monotonic() + 300
        while not (os.path.isfile(log) and "batch [" in open(log).read()):
            assert grid_proc.poll() is None and time.monotonic() < deadline, \
                grid_proc.communicate()
            time.sleep(0.2)
        with open(os.path.join(train, "run.lock")) as f:
            pid = f.read().split()[0]  # the script's: its process group's
        grid_proc.send_signal(signum)
        stdout, stderr = grid_proc.communicate(timeout=300)
    finally:
        if grid_proc.poll() is None:
            grid_proc.kill()
            grid_proc.communicate()
    name = signal.Signals(signum).name
    assert grid_proc.returncode == 128 + signum, stdout + stderr
    # one line, no traceback
    assert stderr == ("interrupted by {}: stopped 1 running unit(s) (coop/toy/seed1), 0 not "
                      "started; run the same command again to resume them.\n".format(name))
    # the script's process group (the script and its train.py) has ended, the
    # lock is released, and train.py stopped as an interrupted run does
    with pytest.raises(ProcessLookupError):
        os.killpg(int(pid), 0)
    assert not os.path.exists(os.path.join(train, "run.lock"))
    assert open(log).read().rstrip().splitlines()[-1].startswith("Interrupted in epoch ")
    # the same grid again plans the train as to do (resume), not as busy
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    code, lines = grid("--methods", "coop", "--datasets", "toy", "--seeds", "1", "--output", out,
                       "--shots", "2", "--opts", "OPTIM.MAX_EPOCH 500 TRAIN.PRINT_FREQ 1",
                       "--dry-run")
    assert code == 0 and lines[1].startswith("  [todo] bash scripts/coop/base2new_train.sh"), lines
