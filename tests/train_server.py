"""Run ``python train.py ARGS`` for the tests without paying Python's start-up
each time: a server process imports torch, torchvision, CLIP and the project
once, then forks one child per run. The child sets the run's environment,
working folder and standard streams and executes ``train.py`` as
``__main__``, as ``python train.py`` would; its exit status, stdout and
stderr come back as a ``subprocess.CompletedProcess``.

The server computes nothing before forking (no thread pool exists to be
copied), and it is started with the tests' child environment
(``e2e_helpers.subprocess_env``: one thread, CPU only). A run whose
environment differs in what is read at import (``DASSL_BACKEND``,
``PYTHONPATH``, the thread counts) must use a real subprocess; the client
tells (:meth:`TrainServer.can_run`).

Protocol (JSON lines): the client sends ``{"id", "argv", "env", "cwd",
"stdout", "stderr"}``; the server answers ``{"id", "pid"}`` at the fork and
``{"id", "returncode"}`` when the child ends.
"""
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import traceback

#: variables read when the server imports the project; a run must match them
IMPORT_TIME_ENV = ("DASSL_BACKEND", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                   "CUDA_VISIBLE_DEVICES", "PYTHONWARNINGS")


def _child(job):
    """In the forked child: become ``python train.py ARGV`` and exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        script = os.path.join(job["cwd"], job["argv"][0])
        sys.argv = list(job["argv"])
        sys.path[0] = os.path.dirname(script)
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exit_:
            if exit_.code is None:
                code = 0
            elif isinstance(exit_.code, int):
                code = exit_.code
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - what python would print
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve():
    """The server loop (``python tests/train_server.py``)."""
    import torch  # noqa: F401 - the imports every run needs, once
    import torchvision  # noqa: F401
    import clip  # noqa: F401

    import clipwb.datasets  # noqa: F401
    import clipwb.engine  # noqa: F401
    import clipwb.trainers  # noqa: F401
    from clipwb import registration  # noqa: F401

    for name in clipwb.trainers.TRAINER_MODULES:
        clipwb.trainers.trainer_module(name)
    out = sys.stdout
    lock = threading.Lock()

    def answer(**message):
        with lock:
            out.write(json.dumps(message) + "\n")
            out.flush()

    def wait(job_id, pid):
        _, status = os.waitpid(pid, 0)
        answer(id=job_id, returncode=os.waitstatus_to_exitcode(status))

    for line in sys.stdin:
        job = json.loads(line)
        with lock:
            out.flush()
            sys.stderr.flush()
            pid = os.fork()
        if pid == 0:
            _child(job)
        answer(id=job["id"], pid=pid)
        threading.Thread(target=wait, args=(job["id"], pid), daemon=True).start()


class TrainServer:
    """The client: :meth:`run` is safe to call from several threads."""

    def __init__(self, env, cwd, scratch):
        self.env = dict(env)
        self.cwd = cwd
        self.scratch = scratch
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], cwd=cwd, env=self.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.pending = {}
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.lock:
                slot = self.pending[message["id"]]
            slot.update(message)
            if "returncode" in message:
                slot["done"].set()
            else:
                slot["started"].set()
        with self.lock:  # the server died: fail every waiting run
            for slot in self.pending.values():
                slot.setdefault("returncode", None)
                slot["started"].set()
                slot["done"].set()

    def can_run(self, env):
        return all(env.get(k) == self.env.get(k) for k in IMPORT_TIME_ENV)

    def run(self, argv, env, timeout):
        """``python ARGV`` (ARGV[0] the script, relative to the server's cwd)."""
        with self.lock:
            job_id = self.next_id
            self.next_id += 1
            slot = {"started": threading.Event(), "done": threading.Event()}
            self.pending[job_id] = slot
        base = os.path.join(self.scratch, "run{}".format(job_id))
        job = {"id": job_id, "argv": [str(a) for a in argv], "env": env, "cwd": self.cwd,
               "stdout": base + ".out", "stderr": base + ".err"}
        with self.lock:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        slot["started"].wait(60)
        if not slot["done"].wait(timeout):
            if slot.get("pid"):
                os.killpg(slot["pid"], signal.SIGKILL)
            slot["done"].wait(60)
            raise subprocess.TimeoutExpired([sys.executable] + job["argv"], timeout)
        if slot.get("returncode") is None:
            raise RuntimeError("the train server died (run {})".format(job["argv"]))
        with open(job["stdout"], encoding="utf-8", errors="replace") as f:
            stdout = f.read()
        with open(job["stderr"], encoding="utf-8", errors="replace") as f:
            stderr = f.read()
        return subprocess.CompletedProcess([sys.executable] + job["argv"], slot["returncode"],
                                           stdout, stderr)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    serve()
