"""A killed run loses nothing and resumes exactly.

End to end, a DiSa run of the real ``train.py`` (tiny CLIP, tiny Caltech101)
is killed with SIGTERM in epoch 3: its log holds every line it printed, it
ends with one line saying how to resume, and the same command then finishes
the run with the per-iteration losses (every logged term) and the accuracy of
a run never stopped. In process, GuiDG (Beta moving average, per-domain
sampler position) and PromptSRC (GPA) are interrupted with Ctrl-C
(KeyboardInterrupt) and resume exactly too.
"""
import errno
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from clipwb.engine import build_trainer, set_random_seed
from clipwb.engine.builtin.utils.torchtools import save_checkpoint
from clipwb.errors import DiskFullError, UserInputError
from clipwb.trainers.kit.resumable import RUN_STATE_FILE, save_atomically
from tests import e2e_helpers as h
from tests.dataset_layouts import write_dataset
from tests.dg_kit import make_dg_cfg, write_expert
from tests.dg_layouts import write_domainbed
from tests.trainer_kit import make_cfg, write_two_class_images

EPOCHS = 6
KILL_AT = "epoch [3/{}] batch [1/".format(EPOCHS)
TIMING = re.compile(r" time \S+ \(\S+\) data \S+ \(\S+\)| eta \S+$")


def logged_steps(text, epochs=None):
    """The progress lines without their timings: every logged loss term, the
    accuracy and the learning rate of each step (of ``epochs`` when given)."""
    rows = []
    for line in text.splitlines():
        match = h.PROGRESS_RE.match(line)
        if match and (epochs is None or int(match.group(1)) in epochs):
            rows.append(TIMING.sub("", line))
    return rows


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, tiny_clip_path):
    """A reference DiSa run, and the same run killed in epoch 3 then re-run."""
    tmp = tmp_path_factory.mktemp("resume")
    data = str(tmp / "data")
    write_dataset(data, "Caltech101", n_classes=4)

    def args(out):
        return h.train_args("DiSa", data, out, tiny_clip_path, "OPTIM.MAX_EPOCH", EPOCHS,
                            "DATASET.SUBSAMPLE_CLASSES", "base")

    ref_dir, run_dir = str(tmp / "reference"), str(tmp / "killed")
    reference = {}
    thread = threading.Thread(target=lambda: reference.update(
        proc=h.run_train_py(args(ref_dir), timeout=600)))
    thread.start()

    # A real process, killed as a user's shell or a cluster's scheduler kills it.
    proc, printed, killed = h.run_stopped_at([sys.executable, "train.py"]
                                             + [str(a) for a in args(run_dir)], KILL_AT)
    first_log = h.read_log(os.path.join(run_dir, "log.txt"))
    had_state = os.path.isfile(os.path.join(run_dir, RUN_STATE_FILE))
    again = h.run_train_py(args(run_dir), timeout=600)
    thread.join(timeout=600)
    return dict(ref=reference["proc"], ref_dir=ref_dir, run_dir=run_dir, killed=proc,
                printed=printed, first_log=first_log, had_state=had_state, again=again)


def test_a_killed_run_logs_every_line_and_says_how_to_resume(killed_and_resumed):
    r = killed_and_resumed
    assert r["killed"].returncode == 130, "the run was not interrupted in training: {}".format(
        r["printed"][-5:])
    assert r["printed"][-1].startswith("Interrupted in epoch 3 of {}: the state at the end of "
                                       "epoch 2 is kept in".format(EPOCHS))
    assert r["printed"][-1].endswith("run the same command again to resume.")
    assert "Traceback" not in r["killed"].stderr.read()
    # Every line printed after the logger started (the console's header on)
    # is in log.txt, in order, up to the last one (the line about resuming).
    log_lines = iter(r["first_log"].splitlines())
    start = [i for i, line in enumerate(r["printed"]) if line.startswith("** DiSa on")][0]
    shown = r["printed"][start:]
    assert sum(1 for line in shown if h.PROGRESS_RE.match(line)) >= 2 * 2 + 1
    missing = [line for line in shown if not any(line == logged for logged in log_lines)]
    assert not missing, "printed but not in log.txt: {}".format(missing[:3])
    assert r["first_log"].splitlines()[-1] == r["printed"][-1]
    assert r["had_state"]


def test_the_same_command_resumes_to_the_same_losses_and_accuracy(killed_and_resumed):
    r = killed_and_resumed
    assert r["ref"].returncode == 0, h.describe(r["ref"])
    assert r["again"].returncode == 0, h.describe(r["again"])
    assert "Found the run state of epoch 2" in r["again"].stdout
    reference = h.read_log(os.path.join(r["ref_dir"], "log.txt"))
    resumed = h.read_log(h.log_paths(r["run_dir"])[-1])
    before = logged_steps(r["first_log"], epochs={1, 2})
    after = logged_steps(resumed)
    assert after[0].startswith("epoch [3/{}] batch [1/".format(EPOCHS))
    assert "loss_cir" in after[0] and "loss_dir" in after[0]
    assert before + after == logged_steps(reference)
    assert h.evaluator_block(resumed) == h.evaluator_block(reference)
    # The CoOp-family files are as an uninterrupted run leaves them; the run
    # state is gone once training finished.
    assert sorted(os.listdir(os.path.join(r["run_dir"], "prompt_learner"))) == \
        sorted(os.listdir(os.path.join(r["ref_dir"], "prompt_learner")))
    assert not os.path.exists(os.path.join(r["run_dir"], RUN_STATE_FILE))


# ---------------------------------------------------------------- in process

def interrupt_at(trainer, epoch, batch):
    """Make ``trainer`` raise KeyboardInterrupt (Ctrl-C) at that step (0-based)."""
    step = trainer.forward_backward

    def forward_backward(*args):
        if trainer.epoch == epoch and trainer.batch_idx == batch:
            raise KeyboardInterrupt
        return step(*args)

    trainer.forward_backward = forward_backward


def train_and_capture(capsys, cfg, interrupt=None):
    """Seed as train.py does, build, train; return (printed text, trainer)."""
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    capsys.readouterr()
    if interrupt:
        interrupt_at(trainer, *interrupt)
        with pytest.raises(SystemExit) as exit_info:
            trainer.train()
        assert exit_info.value.code == 130
    else:
        trainer.train()
    return capsys.readouterr().out, trainer


def check_exact_resume(capsys, make, epochs, interrupt):
    """Train uninterrupted, then interrupted at ``interrupt`` and resumed: the
    same logged steps, evaluator block and final weights of every model."""
    reference, uninterrupted = train_and_capture(capsys, make("reference"))
    first, _ = train_and_capture(capsys, make("run"), interrupt)
    interrupted_epoch = interrupt[0] + 1
    assert "Interrupted in epoch {} of {}".format(interrupted_epoch, epochs) in first
    resumed, trainer = train_and_capture(capsys, make("run"))
    assert "Found the run state of epoch {}".format(interrupt[0]) in resumed
    steps = (logged_steps(first, epochs=set(range(1, interrupted_epoch)))
             + logged_steps(resumed))
    assert steps == logged_steps(reference) and len(steps) > 0
    assert h.evaluator_block(resumed) == h.evaluator_block(reference)
    for name in uninterrupted.get_model_names():
        want = uninterrupted._models[name].state_dict()
        got = trainer._models[name].state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want), name
    return trainer


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    return write_domainbed(tmp_path_factory.mktemp("dg_resume"), "PACS", n_classes=3,
                           n_per_class=7, domains=["art_painting", "cartoon", "photo"])


def test_guidg_resumes_exactly_with_its_average_and_sampler(pacs, tiny_clip_path, tmp_path,
                                                           capsys):
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    # 6 training images a domain (2 shots of 3 classes), 3 a batch, 3 batches
    # an epoch: epoch 2 starts part-way through each domain's shuffled order.
    opts = ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
            "TRAINER.GUIDG.BATCH_PER_DOMAIN", "3", "TRAINER.GUIDG.ITERS_PER_EPOCH", "3",
            "OPTIM.MAX_EPOCH", "3", "TRAIN.PRINT_FREQ", "1", "SEED", "1"]

    def make(name):
        return make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / name, opts)

    trainer = check_exact_resume(capsys, make, 3, interrupt=(1, 1))
    assert int(trainer.eval_encoder.num_updates) == 9  # BMA over all 9 steps


def test_a_finished_guidg_run_run_again_trains_nothing_and_tests_the_same(
        pacs, tiny_clip_path, tmp_path, capsys):
    """The same command on a finished GuiDG run resumes from Dassl's last
    checkpoint, the averaged encoder included, and only tests."""
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    cfg = make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / "out", [
        "TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
        "TRAINER.GUIDG.ITERS_PER_EPOCH", "2", "OPTIM.MAX_EPOCH", "2", "SEED", "1"])
    first, _ = train_and_capture(capsys, cfg)
    again, trainer = train_and_capture(capsys, cfg)
    assert "Previous epoch: 2" in again and not logged_steps(again)
    assert int(trainer.eval_encoder.num_updates) == 4
    assert h.evaluator_block(again) == h.evaluator_block(first)


def test_promptsrc_resumes_exactly_with_its_gpa(tiny_clip_path, tmp_path, capsys):
    data = write_two_class_images(tmp_path)
    opts = ["TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
            "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.GPA_MEAN", "2",
            "TRAINER.PROMPTSRC.GPA_STD", "1", "SEED", "1", "INPUT.TRANSFORMS",
            '["random_flip", "normalize"]']

    def make(name):
        return make_cfg("PromptSRC", tiny_clip_path, data, tmp_path / name, opts,
                        max_epoch=4, lr=0.001)

    trainer = check_exact_resume(capsys, make, 4, interrupt=(2, 0))
    assert trainer.gpa.total_weight > 0


# ---------------------------------------------------------------- the parts

def test_the_run_state_is_replaced_atomically(tmp_path, monkeypatch):
    path = str(tmp_path / RUN_STATE_FILE)
    save_atomically({"epoch": 1}, path)

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_atomically({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}


def test_ctrl_c_before_any_epoch_finished(tiny_clip_path, tmp_path, capsys):
    data = write_two_class_images(tmp_path)
    cfg = make_cfg("CoOp", tiny_clip_path, data, tmp_path / "out", ["SEED", "1"])
    out, _ = train_and_capture(capsys, cfg, interrupt=(0, 0))
    assert out.rstrip().splitlines()[-1] == (
        "Interrupted in epoch 1 of 2: no epoch had finished, so it will start again; run the "
        "same command again to resume.")
    assert not (tmp_path / "out" / RUN_STATE_FILE).exists()


def test_a_run_state_of_another_trainer_is_one_clear_error(tiny_clip_path, tmp_path, capsys):
    data = write_two_class_images(tmp_path)
    out = tmp_path / "out"
    train_and_capture(capsys, make_cfg("CoOp", tiny_clip_path, data, out, ["SEED", "1"],
                                       max_epoch=3), interrupt=(2, 0))
    assert (out / RUN_STATE_FILE).is_file()
    before = (out / RUN_STATE_FILE).read_bytes()
    set_random_seed(1)
    other = build_trainer(make_cfg("CoCoOp", tiny_clip_path, data, out, ["SEED", "1"],
                                   max_epoch=3))
    with pytest.raises(UserInputError, match='Cannot resume from ".*run_state.pth"'):
        other.train()
    assert (out / RUN_STATE_FILE).read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_a_damaged_run_state_is_one_clear_error(tiny_clip_path, tmp_path, capsys, content):
    data = write_two_class_images(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / RUN_STATE_FILE).write_bytes(content)
    set_random_seed(1)
    trainer = build_trainer(make_cfg("CoOp", tiny_clip_path, data, out, ["SEED", "1"]))
    with pytest.raises(UserInputError, match='Cannot resume from ".*run_state.pth": it is not a '
                                             "readable checkpoint"):
        trainer.train()
    assert (out / RUN_STATE_FILE).read_bytes() == content  # left for the user to look at


# ------------------------------------------------- a save cut short, a full disk

def die_while_saving(monkeypatch, file_name, error):
    """Make ``torch.save`` write half of ``file_name`` (a path, or the
    temporary file of an atomic write) and raise ``error`` there: a kill, or a
    full disk, in the middle of that save."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        name = os.path.basename(str(getattr(f, "name", f)))
        if name.split(".tmp")[0] != file_name:
            return real_save(obj, f, *args, **kwargs)
        if isinstance(f, str):
            with open(f, "wb") as out:
                out.write(b"PK\x03\x04 half a checkpoint")
        else:
            f.write(b"PK\x03\x04 half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", save)


def test_a_kill_during_the_final_checkpoint_save_resumes_from_the_run_state(
        tiny_clip_path, tmp_path, capsys, monkeypatch):
    """Killed while the last epoch's checkpoint is written (the model folder
    made, no ``checkpoint`` file yet): the same command resumes from the run
    state of epoch 2 and ends as a run never stopped."""
    data = write_two_class_images(tmp_path)

    def make(name):
        return make_cfg("CoOp", tiny_clip_path, data, tmp_path / name, ["SEED", "1"],
                        max_epoch=3)

    reference, uninterrupted = train_and_capture(capsys, make("reference"))
    die_while_saving(monkeypatch, "model.pth.tar-3", KeyboardInterrupt())
    first, _ = train_and_capture(capsys, make("run"), interrupt=(99, 0))
    monkeypatch.undo()
    folder = tmp_path / "run" / "prompt_learner"
    assert "Interrupted in epoch 3 of 3" in first
    assert not (folder / "checkpoint").exists()
    assert not (folder / "model.pth.tar-3").exists()  # no half file under the real name
    assert not os.listdir(str(folder))  # the temporary file is gone too
    assert (tmp_path / "run" / RUN_STATE_FILE).is_file()

    resumed, trainer = train_and_capture(capsys, make("run"))
    assert "was cut short" in resumed and "Found the run state of epoch 2" in resumed
    assert logged_steps(resumed) == logged_steps(reference, epochs={3}) != []
    assert h.evaluator_block(resumed) == h.evaluator_block(reference)
    want = uninterrupted._models["prompt_learner"].state_dict()
    got = trainer._models["prompt_learner"].state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert sorted(os.listdir(str(folder))) == ["checkpoint", "model.pth.tar-3"]
    assert not (tmp_path / "run" / RUN_STATE_FILE).exists()


def test_a_full_disk_is_one_sentence_naming_the_file_and_leaves_no_temporary_file(
        tiny_clip_path, tmp_path, capsys, monkeypatch):
    """ENOSPC while the run state of epoch 2 is written (simulated: torch
    reports it as a RuntimeError raised while handling the OSError)."""
    data = write_two_class_images(tmp_path)
    out = tmp_path / "out"
    cfg = make_cfg("CoOp", tiny_clip_path, data, out, ["SEED", "1"], max_epoch=4)
    train_and_capture(capsys, cfg, interrupt=(2, 0))  # leaves the run state of epoch 2
    kept = (out / RUN_STATE_FILE).read_bytes()

    def full_disk():
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

    try:
        full_disk()
    except RuntimeError as err:
        error = err
    die_while_saving(monkeypatch, RUN_STATE_FILE, error)
    set_random_seed(1)
    trainer = build_trainer(cfg)
    with pytest.raises(DiskFullError) as info:
        trainer.train()  # resumes at epoch 3, then fails to save the state of epoch 3
    monkeypatch.undo()
    assert str(info.value) == (
        'No space left on the device (disk full or quota reached) to write "{}": free some '
        "space and run the same command again, the run resumes from its last saved "
        "state.".format(out / RUN_STATE_FILE))
    assert isinstance(info.value, UserInputError)
    assert sorted(os.listdir(str(out))) == [RUN_STATE_FILE, "tensorboard"]
    assert (out / RUN_STATE_FILE).read_bytes() == kept  # the last saved state, whole

    resumed, _ = train_and_capture(capsys, cfg)  # space freed: it resumes
    assert "Found the run state of epoch 2" in resumed
    assert h.evaluator_block(resumed) is not None


def test_every_checkpoint_file_is_written_atomically(tmp_path, monkeypatch):
    """The built-in save_checkpoint: a kill while writing the epoch file or the
    best copy leaves the previous files (pointer included) as they were."""
    folder = str(tmp_path / "prompt_learner")
    state = {"state_dict": {"w": torch.ones(3)}, "epoch": 1}
    save_checkpoint(dict(state), folder, is_best=True)
    before = {name: (tmp_path / "prompt_learner" / name).read_bytes()
              for name in os.listdir(folder)}
    assert sorted(before) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-1"]
    die_while_saving(monkeypatch, "model.pth.tar-2", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, folder, is_best=True)
    monkeypatch.undo()

    def broken_copy(src, dst):
        dst.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", broken_copy)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, folder, is_best=True)
    monkeypatch.undo()
    after = {name: (tmp_path / "prompt_learner" / name).read_bytes()
             for name in os.listdir(folder)}
    assert after.pop("model.pth.tar-2")  # whole: saved before the copy was cut
    assert after.pop("checkpoint") == b"model.pth.tar-2\n"
    assert after == {k: v for k, v in before.items() if k != "checkpoint"}
    assert torch.load(os.path.join(folder, "model-best.pth.tar"))["epoch"] == 1


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root and mount(8) needed: skipped otherwise)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): {}".format(
            (proc.stderr or proc.stdout).strip()))
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_real_full_disk_keeps_the_old_file_and_no_temporary_one(small_tmpfs):
    path = str(small_tmpfs / RUN_STATE_FILE)
    save_atomically({"epoch": 1, "w": torch.ones(1000)}, path)
    with pytest.raises(DiskFullError, match='to write "{}": free some space'.format(path)):
        save_atomically({"epoch": 2, "w": torch.ones(100000)}, path)  # 400 kB > 64 kB
    assert os.listdir(str(small_tmpfs)) == [RUN_STATE_FILE]
    assert torch.load(path)["epoch"] == 1


def test_train_py_on_a_full_disk_ends_with_the_sentence_and_resumes_once_space_is_freed(
        small_tmpfs, tmp_path, tiny_clip_path):
    """The real train.py on a 64 KiB tmpfs: the log fits, the first run state
    (about 90 kB) does not."""
    data = str(tmp_path / "data")
    write_dataset(data, "Caltech101", n_classes=4)
    out = str(small_tmpfs / "run")
    args = h.train_args("CoOp", data, out, tiny_clip_path, "OPTIM.MAX_EPOCH", 3)
    proc = h.run_train_py(args)
    message = 'Error: No space left on the device (disk full or quota reached) to write "{}"' \
              ": free some space and run the same command again, the run resumes from its " \
              "last saved state.".format(os.path.join(out, RUN_STATE_FILE))
    assert proc.returncode == 2, h.describe(proc)
    assert proc.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in proc.stderr
    assert h.read_log(os.path.join(out, "log.txt")).splitlines()[-1] == message
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)
    again = h.run_train_py(args)
    assert again.returncode == 0, h.describe(again)
    assert os.path.isfile(os.path.join(out, "prompt_learner", "model.pth.tar-3"))
