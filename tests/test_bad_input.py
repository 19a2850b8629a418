"""Bad input through ``python train.py``, as a user meets it.

Each case must exit non-zero with ONE line on stderr (``Error: ...``) that
names the offending trainer / dataset / file / key / image, print no Python
traceback, and leave every file that already existed untouched: the output
dir of an earlier run (log.txt, checkpoint) and the dataset folder (split
file, few-shot cache). Every case gets its own copies of both; the cases run
two at a time in one module fixture.
"""
import os
import shutil
import time

import pytest

from tests import e2e_helpers as h
from tests.dataset_layouts import write_dataset

TRAINER = "CoOp"
BASE_OPTS = ("OPTIM.MAX_EPOCH", "1", "DATASET.SUBSAMPLE_CLASSES", "base")


def set_flag(args, flag, value):
    """Replace the value of ``flag`` in an argument list (or append the flag)."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args[:0] = [flag, value]
    return args


def offline_env(case_dir):
    """No cached CLIP (a fresh HOME) and a network that refuses at once."""
    env = h.subprocess_env(HOME=os.path.join(case_dir, "home"))
    for key in ("no_proxy", "NO_PROXY"):
        env.pop(key, None)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        env[key] = "http://127.0.0.1:9"
    return env


# Each case: (prepare(case) -> args, env or None, substrings the message must hold).
# ``case`` has: dir, data (its DATA copy), out (its output-dir copy), clip, args
# (a valid command line for those) and dataset (the WrittenDataset).

def unknown_trainer(c):
    return set_flag(c.args, "--trainer", "NoSuchTrainer"), None, [
        "'NoSuchTrainer'", "available:", "CoOp", "PromptSRC", "ZeroshotCLIP"]


def unknown_dataset(c):
    path = os.path.join(c.dir, "no_such_dataset.yaml")
    with open(path, "w") as f:
        f.write('DATASET:\n  NAME: "NoSuchData"\n')
    return set_flag(c.args, "--dataset-config-file", path), None, [
        "'NoSuchData'", "available:", "Caltech101"]


def missing_dataset_folder(c):
    empty = os.path.join(c.dir, "empty_data")
    os.makedirs(empty)
    return set_flag(c.args, "--root", empty), None, [
        os.path.join(empty, "caltech-101"), "split_zhou_Caltech101.json", "set with --root"]


def missing_dataset_folder_from_a_script(c):
    """The run scripts take DATA, not --root: the message says so."""
    empty = os.path.join(c.dir, "empty_data")
    os.makedirs(empty)
    return set_flag(c.args, "--root", empty), h.subprocess_env(CLIPWB_SCRIPT="1"), [
        os.path.join(empty, "caltech-101"), "set with DATA=/path/to/data before the script"]


def missing_split_file(c):
    split = os.path.join(c.data, "caltech-101", "split_zhou_Caltech101.json")
    os.remove(split)
    return c.args, None, [split]


def unknown_key_in_yaml(c):
    path = os.path.join(c.dir, "typo.yaml")
    with open(path, "w") as f:
        f.write("TRAINER:\n  COOP:\n    N_CTXX: 4\n")
    return set_flag(c.args, "--config-file", path), None, [
        path, "TRAINER.COOP.N_CTXX", "Did you mean TRAINER.COOP.N_CTX"]


def unknown_key_in_opts(c):
    return c.args + ["OPTIM.LRR", "0.1"], None, ["OPTIM.LRR", "command-line",
                                                 "Did you mean OPTIM.LR"]


def missing_config_file(c):
    path = "configs/trainers/CoOp/no_such_config.yaml"
    return set_flag(c.args, "--config-file", path), None, [path, "--config-file"]


def missing_clip_file(c):
    path = os.path.join(c.dir, "no_such_clip.pt")
    return c.args + ["MODEL.BACKBONE.NAME", path], None, [path, "MODEL.BACKBONE.NAME"]


def unknown_model_name(c):
    return c.args + ["MODEL.BACKBONE.NAME", "ViT-X/99"], offline_env(c.dir), [
        "'ViT-X/99'", "ViT-B/16", "MODEL.BACKBONE.NAME"]


def model_not_cached_offline(c):
    return c.args + ["MODEL.BACKBONE.NAME", "ViT-B/32"], offline_env(c.dir), [
        "'ViT-B/32'", "~/.cache/clip/ViT-B-32.pt"]


def corrupt_train_image(workers):
    def prepare(c):
        # The copied few-shot cache lists the earlier run's images (absolute
        # paths, as CoOp's caches do): drop it, so the shots come from this copy.
        shutil.rmtree(os.path.join(c.data, "caltech-101", "split_fewshot"))
        # The first image of the first base class: in the few-shot train set.
        path = os.path.join(c.data, "caltech-101", "101_ObjectCategories", "Faces",
                            "image_0001.jpg")
        with open(path, "wb") as f:
            f.write(b"this is not a JPEG")
        # One more epoch than the earlier run saved, so that training reads it.
        return c.args + ["DATALOADER.NUM_WORKERS", str(workers), "OPTIM.MAX_EPOCH", "2"], \
            None, [path]
    return prepare


def with_eval_flags(args, model_dir, epoch):
    """``args`` with ``--eval-only --model-dir --load-epoch`` before the opts."""
    i = args.index("MODEL.BACKBONE.NAME")
    return args[:i] + ["--eval-only", "--model-dir", model_dir, "--load-epoch", epoch] + args[i:]


def eval_without_checkpoint(c):
    # The earlier run saved epoch 1 only.
    return with_eval_flags(c.args, c.out, "5"), None, [
        os.path.join(c.out, "prompt_learner", "model.pth.tar-5"), "model.pth.tar-1"]


def eval_model_dir_without_model(c):
    empty = os.path.join(c.dir, "not_a_run")
    os.makedirs(empty)
    return with_eval_flags(c.args, empty, "1"), None, [os.path.join(empty, "prompt_learner", "model.pth.tar-1")]


CASES = {
    "unknown_trainer": unknown_trainer,
    "unknown_dataset": unknown_dataset,
    "missing_dataset_folder": missing_dataset_folder,
    "missing_dataset_folder_from_a_script": missing_dataset_folder_from_a_script,
    "missing_split_file": missing_split_file,
    "unknown_key_in_yaml": unknown_key_in_yaml,
    "unknown_key_in_opts": unknown_key_in_opts,
    "missing_config_file": missing_config_file,
    "missing_clip_file": missing_clip_file,
    "unknown_model_name": unknown_model_name,
    "model_not_cached_offline": model_not_cached_offline,
    "corrupt_image": corrupt_train_image(0),
    "corrupt_image_in_worker": corrupt_train_image(2),
    "eval_without_checkpoint": eval_without_checkpoint,
    "eval_model_dir_without_model": eval_model_dir_without_model,
}


# Cases that fail after the logger started (data, model and image errors).
LOGGED_CASES = {"missing_dataset_folder", "missing_split_file", "missing_clip_file",
                "corrupt_image", "corrupt_image_in_worker", "eval_without_checkpoint"}


class Case:
    def __init__(self, root, name, prior, clip):
        self.dir = os.path.join(root, name)
        self.data = os.path.join(self.dir, "data")
        self.out = os.path.join(self.dir, "output")
        self.clip = clip
        shutil.copytree(prior["data"], self.data)
        shutil.copytree(prior["out"], self.out)
        self.args = h.train_args(TRAINER, self.data, self.out, clip, *BASE_OPTS)


@pytest.fixture(scope="module")
def prior(tmp_path_factory, tiny_clip_path):
    """A dataset and the output dir of one finished run (log, checkpoint, cache)."""
    root = tmp_path_factory.mktemp("bad_input")
    data = str(root / "data")
    write_dataset(data, "Caltech101", n_classes=4)
    out = str(root / "prior_run")
    proc = h.run_train_py(h.train_args(TRAINER, data, out, tiny_clip_path, *BASE_OPTS))
    assert proc.returncode == 0, h.describe(proc)
    expected = [os.path.join(out, "log.txt"),
                os.path.join(out, "prompt_learner", "model.pth.tar-1"),
                os.path.join(data, "caltech-101", "split_fewshot", "shot_4-seed_1.pkl"),
                os.path.join(data, "caltech-101", "split_zhou_Caltech101.json")]
    for path in expected:
        assert os.path.isfile(path), path
    return {"root": str(root), "data": data, "out": out}


@pytest.fixture(scope="module")
def outcomes(prior, tiny_clip_path):
    """Run every case (two at a time); name -> (case, before, proc, seconds, expected)."""
    prepared = {}
    for name, prepare in CASES.items():
        case = Case(prior["root"], name, prior, tiny_clip_path)
        args, env, expected = prepare(case)
        before = {os.path.join("data", k): v for k, v in h.snapshot(case.data).items()}
        before.update({os.path.join("output", k): v for k, v in h.snapshot(case.out).items()})
        prepared[name] = (case, args, env, expected, before)

    def job(name):
        case, args, env, _, _ = prepared[name]
        start = time.time()
        proc = h.run_train_py(args, env=env, timeout=300)  # a hang fails, not a slow machine
        return proc, time.time() - start

    done = h.run_all({name: (lambda n=name: job(n)) for name in prepared}, workers=2)
    out = {}
    for name, (case, _, _, expected, before) in prepared.items():
        if isinstance(done[name], Exception):
            raise done[name]
        proc, seconds = done[name]
        out[name] = (case, before, proc, seconds, expected)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_clear_line_and_nothing_overwritten(outcomes, name):
    case, before, proc, seconds, expected = outcomes[name]
    assert proc.returncode != 0, h.describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, "expected one line on stderr:\n" + proc.stderr
    message = lines[0]
    assert message.startswith("Error: "), message
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for needle in expected:
        assert needle in message, "{!r} not in: {}".format(needle, message)
    # Every file that existed before is byte-identical.
    after = {os.path.join("data", k): v for k, v in h.snapshot(case.data).items()}
    after.update({os.path.join("output", k): v for k, v in h.snapshot(case.out).items()})
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    assert not changed, "changed or deleted: {}".format(changed)
    # A run that got as far as its log (a new log.txt-<time> beside the old
    # one) ends that log with the same error line.
    new_logs = [k for k in after if k not in before and os.path.basename(k).startswith("log.txt")]
    if name in LOGGED_CASES:
        assert new_logs, "no new log in the output dir"
    for path in new_logs:
        logged = [line for line in after[path].decode().splitlines() if line.strip()]
        assert logged[-1] == message, path


def test_model_download_has_a_network_timeout(tmp_path, monkeypatch):
    """The loader bounds every network wait of a download (a firewall that drops
    packets must not hang train.py) and restores the socket default after."""
    import socket
    import urllib.error

    from clip import clip as clip_api

    from clipwb.errors import MissingFileError
    from clipwb.trainers.kit.clip_loader import load_clip

    seen = []

    def offline_download(url, root):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("timed out")

    monkeypatch.setattr(clip_api, "_download", offline_download)
    before = socket.getdefaulttimeout()
    with pytest.raises(MissingFileError, match="RN50.pt"):
        load_clip("RN50", download_root=str(tmp_path))
    assert seen and seen[0] is not None and 0 < seen[0] <= 60
    assert socket.getdefaulttimeout() == before
