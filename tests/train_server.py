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

The bash run scripts reach the same server through ``PYTHON``:
:func:`write_python_shim` writes an executable that stands for ``python``.
It passes its own argv, environment, working folder and standard streams
(the file descriptors themselves, over the server's Unix socket) and exits
with the run's status, forwarding SIGINT / SIGTERM to the run. What the
server cannot run as a forked ``python SCRIPT ARGS`` (``-c``, ``-m``, another
working folder, such as a host checkout with its own ``clip`` package, or an
import-time variable that differs) the shim runs with the real interpreter.
"""
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

#: variables read when the server imports the project; a run must match them
IMPORT_TIME_ENV = ("DASSL_BACKEND", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                   "CUDA_VISIBLE_DEVICES", "PYTHONWARNINGS")


#: the socket of the shim's runs, and the variable that names it
SOCKET_ENV = "CLIPWB_TEST_TRAIN_SOCKET"


def _child(job, fds=None):
    """In the forked child: become ``python train.py ARGV`` and exit
    (standard streams: ``fds`` (in, out, err) when given, else /dev/null and
    the job's files)."""
    code = 1
    try:
        os.setpgid(0, 0)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        if fds:
            for fd, source in enumerate(fds):
                os.dup2(source, fd)
        else:
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


def _can_run(job, server_cwd):
    """Whether a forked child behaves as ``python ARGV`` would for this job."""
    argv = job["argv"]
    return (bool(argv) and not argv[0].startswith("-") and argv[0].endswith(".py")
            and os.path.realpath(job["cwd"]) == os.path.realpath(server_cwd)
            and all(job["env"].get(k) == os.environ.get(k) for k in IMPORT_TIME_ENV))


def _serve_socket(path, lock):
    """Run the shim's jobs: one connection a run; the message carries the
    job, its three standard streams come as file descriptors."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    cwd = os.getcwd()

    def handle(conn):
        with conn:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            job = json.loads(data.decode("utf-8"))
            if len(fds) != 3 or not _can_run(job, cwd):
                conn.sendall(b'{"refused": true}\n')
                for fd in fds:
                    os.close(fd)
                return
            with lock:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
            if pid == 0:
                _child(job, fds)
            for fd in fds:
                os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode("utf-8") + b"\n")
            _, status = os.waitpid(pid, 0)
            conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)})
                         .encode("utf-8") + b"\n")

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


SHIM = """#!{python}
# stands for python in the tests' script runs (tests/train_server.py)
import json, os, signal, socket, sys
real = {python!r}
args = sys.argv[1:]
path = os.environ.get({socket_env!r})
if path and args and not args[0].startswith("-"):
    # the run may print (and be signalled) before its pid reaches us: a
    # signal before then is passed on once the pid is known
    job_pid, pending = [None], []
    def forward(signum, frame):
        if job_pid[0] is None:
            pending.append(signum)
            return
        try:
            os.killpg(job_pid[0], signum)
        except ProcessLookupError:
            pass
    previous = {{s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        job = {{"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}}
        socket.send_fds(conn, [json.dumps(job).encode("utf-8")], [0, 1, 2])
        answers = conn.makefile("r")
        first = json.loads(answers.readline() or '{{"refused": true}}')
    except OSError:
        first = {{"refused": True}}
    if not first.get("refused"):
        job_pid[0] = first["pid"]
        for signum in pending:
            forward(signum, None)
        code = json.loads(answers.readline() or '{{"returncode": 1}}')["returncode"]
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        sys.exit(code)
    for s, handler in previous.items():
        signal.signal(s, handler)
    for signum in pending:
        os.kill(os.getpid(), signum)
os.execv(real, [real] + args)
"""


def write_python_shim(path, python=sys.executable):
    """Write the executable that stands for ``python`` (see the module
    docstring) at ``path``; return ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(SHIM.format(python=python, socket_env=SOCKET_ENV))
    os.chmod(path, 0o755)
    return path


def serve():
    """The server loop (``python tests/train_server.py [SOCKET]``)."""
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
    if len(sys.argv) > 1:
        threading.Thread(target=_serve_socket, args=(sys.argv[1], lock), daemon=True).start()

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
        self.socket = os.path.join(scratch, "train.sock")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), self.socket], cwd=cwd, env=self.env,
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

    def script_env(self):
        """``PYTHON`` and the socket variable for a bash run script, so that
        its ``python`` runs are forked from this server."""
        shim = os.path.join(self.scratch, "python")
        if not os.path.exists(shim):
            write_python_shim(shim)
        deadline = time.monotonic() + 300  # the server binds once its imports are done
        while not os.path.exists(self.socket) and self.proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return {"PYTHON": shim, SOCKET_ENV: self.socket}

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
