"""The tests' train server and its ``PYTHON`` shim (tests/train_server.py):
a forked run behaves as ``python SCRIPT ARGS`` would (argv, environment,
streams, exit status, signals), and what the server cannot run as such goes
to the real interpreter."""
import signal
import subprocess
import time

from tests.e2e_helpers import REPO, script_python, subprocess_env, train_server

PROBE = r"""
import os, sys, time
print("argv", sys.argv[1:])
print("parent", os.getppid())
print("env", os.environ.get("PROBE_VALUE"))
sys.stderr.write("to stderr\n")
if sys.argv[1:] == ["sleep"]:
    try:  # (a signal right after the line is printed lands in the try)
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
sys.exit(int(os.environ.get("PROBE_STATUS", "0")))
"""


def run_shim(args, cwd=REPO, **extra):
    env = subprocess_env(PROBE_VALUE="x y", **extra)
    env.update(script_python())
    return subprocess.run([env["PYTHON"]] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_script_is_forked_from_the_server_with_its_argv_env_streams_and_status(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    server_pid = str(train_server().proc.pid)
    proc = run_shim([probe, "a", "b c"], PROBE_STATUS="3")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "argv ['a', 'b c']"
    assert lines[1] == "parent " + server_pid  # forked, not a new interpreter
    assert lines[2] == "env x y"
    assert proc.stderr == "to stderr\n"


def test_what_the_server_cannot_run_goes_to_the_real_interpreter(tmp_path):
    server_pid = str(train_server().proc.pid)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    inline = run_shim(["-c", "import os; print(os.getppid())"])
    assert inline.returncode == 0 and inline.stdout.strip() != server_pid
    elsewhere = run_shim([probe], cwd=str(tmp_path))  # e.g. a host checkout
    assert elsewhere.returncode == 0 and "parent " + server_pid not in elsewhere.stdout
    other_backend = run_shim([probe], DASSL_BACKEND="dassl")  # read at import
    assert other_backend.returncode == 0
    assert "parent " + server_pid not in other_backend.stdout


def test_sigint_reaches_the_forked_run(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = subprocess_env()
    env.update(script_python())
    proc = subprocess.Popen([env["PYTHON"], str(probe), "sleep"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "ready" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "ready" in line
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in out
