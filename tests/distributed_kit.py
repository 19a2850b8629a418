"""Shared pieces of the torchrun tests: one run on one process and on two
(``torch.distributed.run``, gloo on the CPU), their logged loss terms and
last checkpoints, compared step for step."""
import os
import re
import socket
import subprocess
import sys

import torch

from tests import e2e_helpers as h
from tests.dataset_layouts import write_dataset

EPOCHS = 2


def torchrun(args, nproc, env=None):
    """``torchrun --standalone --nproc_per_node nproc train.py args``."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node", str(nproc), "train.py"] + [str(a) for a in args],
        cwd=h.REPO, env=env or h.subprocess_env(), capture_output=True, text=True,
        timeout=600)


PROGRESS_LINE_RE = re.compile(r"^epoch \[\d+/\d+\] batch \[\d+/\d+\] ")


def logged_terms(text):
    """Every progress line's loss terms (name -> value), without timings
    (whatever the terms are called: ProGrad logs ``xe_loss`` and ``kl_loss``)."""
    rows = []
    for line in text.splitlines():
        if PROGRESS_LINE_RE.match(line):
            names_values = re.findall(r"(\w+) (-?\d+\.\d+(?:e[-+]\d+)?) \(", line)
            rows.append({k: float(v) for k, v in names_values
                         if k not in ("time", "data")})
    return rows


def last_weights(run_dir, model="prompt_learner", epochs=EPOCHS):
    path = os.path.join(run_dir, model, "model.pth.tar-{}".format(epochs))
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def one_and_two(cache, key, args_for, env=None):
    """The run ``args_for(out_dir)`` with one process and with two, cached in
    ``cache[key]`` (a dict with ``one``, ``two``, ``one_dir``, ``two_dir``)."""
    if key not in cache:
        root = cache["tmp"] / key
        one_dir, two_dir = str(root / "one"), str(root / "two")
        cache[key] = dict(one=h.run_train_py(args_for(one_dir), env=env),
                          two=torchrun(args_for(two_dir), 2, env=env),
                          one_dir=one_dir, two_dir=two_dir)
    return cache[key]


def assert_same_run(r, steps=None, atol=1e-5, model="prompt_learner", epochs=EPOCHS):
    """Both runs succeeded and the 2-process run logged every loss term of
    the 1-process run (to ``atol``), its evaluator block, and its last
    checkpoint's weights (to ``atol``)."""
    assert r["one"].returncode == 0, h.describe(r["one"])
    assert r["two"].returncode == 0, h.describe(r["two"])
    one_log = h.read_log(os.path.join(r["one_dir"], "log.txt"))
    two_log = h.read_log(os.path.join(r["two_dir"], "log.txt"))
    one_steps, two_steps = logged_terms(one_log), logged_terms(two_log)
    if steps is not None:
        assert len(one_steps) == steps
    assert one_steps and len(two_steps) == len(one_steps)
    for a, b in zip(one_steps, two_steps):
        assert a.keys() == b.keys() and any(k.endswith("loss") for k in a)
        for key in a:
            assert abs(a[key] - b[key]) <= atol, (key, a, b)
    assert h.evaluator_block(two_log) == h.evaluator_block(one_log) is not None
    one_w = last_weights(r["one_dir"], model, epochs)
    two_w = last_weights(r["two_dir"], model, epochs)
    assert one_w.keys() == two_w.keys()
    for key in one_w:
        assert torch.allclose(one_w[key].float(), two_w[key].float(), atol=atol), key
    return one_log, two_log


def torchrun_stopped_at(args, prefix, nproc=2, env=None):
    """``torchrun --nproc_per_node nproc train.py args``, sent SIGTERM when it
    prints a line that starts with ``prefix`` (torchrun passes it to every
    rank); returns the printed lines (stdout and stderr) and whether the
    signal was sent."""
    _, printed, killed = h.run_stopped_at(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         str(nproc), "train.py"] + [str(a) for a in args], prefix, env=env, merge_stderr=True)
    return printed, killed


def toy_world(tmp_path_factory, clip, name):
    """A tiny Caltech101 of 4 classes in a fresh folder, the CLIP file, and a
    cache of runs (for :func:`one_and_two`)."""
    tmp = tmp_path_factory.mktemp(name)
    data = str(tmp / "data")
    write_dataset(data, "Caltech101", n_classes=4)
    return dict(tmp=tmp, data=data, clip=clip, runs={"tmp": tmp})


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_entry(work, index, world, port, results):
    # one thread: a forked child must not enter the parent's OpenMP pool (it hangs)
    from clipwb.engine import distributed

    torch.set_num_threads(1)
    os.environ.update(RANK=str(index), WORLD_SIZE=str(world), LOCAL_RANK=str(index),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.init(use_cuda=False)
    results.put((index, work(index)))
    distributed.shutdown()


def on_gloo_ranks(work, world=2, timeout=120):
    """``[work(0), ..., work(world - 1)]``, each run in its own forked process
    joined to the others in a gloo process group (rank ``index``)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("fork")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_entry, args=(work, i, world, port, results))
             for i in range(world)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=timeout) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [got[i] for i in range(world)]
