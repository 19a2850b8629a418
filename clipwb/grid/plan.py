"""Expanding a grid into the scripts' own jobs.

A *step* is one run of a method's script (``bash scripts/<method>/<job>.sh
ARGS``); a *unit* is the steps that must run in order on one machine (the
test after the train it evaluates). The run folder and whether a step is
finished come from the script itself, run with ``CLIPWB_PLAN=1``
(``scripts/common.sh``: it prints ``plan: run DIR`` or ``plan: done DIR`` and
runs nothing), so this module knows no output layout and no config name.
A step whose folder another live process is writing is planned ``busy``
(the script's lock, ``plan: busy DIR``): the grid does not start its unit.

A unit's steps run in a process group of their own (:func:`run_step`):
SIGINT / SIGTERM to the job are passed on to the whole group (the script and
its ``train.py``), and the job ends only once every process of it has.
"""
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from clipwb.errors import UserInputError

#: setting -> the steps of one unit: (job script name, phase label)
SETTINGS = {
    "base2new": (("base2new_train", "train_base"), ("base2new_test", "test_new")),
}
#: the results.py --setting of each setting
RESULTS_SETTING = {"base2new": "base2new"}
#: where each setting's runs live under OUTPUT (results.py's root)
RESULTS_ROOT = {"base2new": "base2new"}


@dataclass
class Step:
    method: str
    dataset: str
    seed: int
    phase: str
    script: str               # absolute path of scripts/<method>/<job>.sh
    args: list                # the script's arguments
    run_dir: str = ""         # from the script's plan
    done: bool = False
    busy: str = ""            # why the folder cannot be written now (another run holds it)

    @property
    def command(self):
        return ["bash", self.script] + [str(a) for a in self.args]

    def describe(self, repo):
        return "bash {} {}".format(os.path.relpath(self.script, repo),
                                   " ".join(str(a) for a in self.args))

    @property
    def log(self):
        return os.path.join(self.run_dir, "log.txt")


@dataclass
class Unit:
    """Steps run one after the other in one job; a failed step stops the rest."""
    steps: list = field(default_factory=list)

    @property
    def name(self):
        s = self.steps[0]
        return "{}/{}/seed{}".format(s.method, s.dataset, s.seed)

    @property
    def todo(self):
        return [s for s in self.steps if not s.done]

    @property
    def busy(self):
        """The first busy step's reason ("" when none is)."""
        return next((s.busy for s in self.steps if s.busy), "")


def script_env(env_overrides):
    """The environment of a script run: ours, plus the grid's overrides."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in env_overrides.items()})
    return env


def methods_available(repo):
    """Script folders that have the base-to-novel jobs (disa, isp, coop, ...)."""
    folder = os.path.join(repo, "scripts")
    return sorted(m for m in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, m, "base2new_train.sh")))


def all_datasets(repo):
    """The benchmark datasets of ``--datasets all``: common.sh's own list."""
    out = subprocess.run(["bash", "-c", 'TRAINER=grid; source scripts/common.sh; '
                          'echo "$BASE2NEW_DATASETS"'], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise UserInputError("scripts/common.sh could not be read: {}".format(out.stderr.strip()))
    return out.stdout.split()


def expand(repo, methods, datasets, seeds, setting="base2new", extra=()):
    """The units of the grid, in grid order (not yet planned)."""
    known = methods_available(repo)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UserInputError("--methods {}: no scripts/<method>/base2new_train.sh for {}; "
                             "choose from {}.".format(" ".join(methods), ", ".join(unknown),
                                                      ", ".join(known)))
    if setting not in SETTINGS:
        raise UserInputError("--setting {}: choose from {}.".format(setting, ", ".join(SETTINGS)))
    if list(datasets) == ["all"]:
        datasets = all_datasets(repo)
    units = []
    for method in methods:
        for dataset in datasets:
            for seed in seeds:
                units.append(Unit([Step(method, dataset, int(seed), phase,
                                        os.path.join(repo, "scripts", method, job + ".sh"),
                                        [dataset, seed] + list(extra))
                                   for job, phase in SETTINGS[setting]]))
    return units


def plan_step(step, env):
    """Ask the script where ``step`` runs and whether it is finished."""
    proc = subprocess.run(step.command, env=dict(env, CLIPWB_PLAN="1"), capture_output=True,
                          text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("plan: ")]
    reason = (proc.stderr.strip().splitlines() or ["no plan line"])[-1]
    if reason.startswith("error: "):
        reason = reason[len("error: "):]
    if proc.returncode != 0 or len(lines) != 1:
        raise UserInputError("bash scripts/{}/{} {} cannot run: {}".format(
            step.method, os.path.basename(step.script), " ".join(map(str, step.args)), reason))
    state, _, run_dir = lines[0][len("plan: "):].partition(" ")
    step.run_dir, step.done = run_dir, state == "done"
    step.busy = reason if state == "busy" else ""
    return step


def plan(units, env, workers=8):
    """Fill in every step's run folder and state (``workers`` scripts at a time)."""
    steps = [s for u in units for s in u.steps]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda s: plan_step(s, env), steps))
    return units


class StepFailed(RuntimeError):
    """A step of a unit exited non-zero (the message names its log)."""


class StepInterrupted(StepFailed):
    """A step was stopped by SIGINT / SIGTERM (the grid was interrupted)."""


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_step(command, env, poll_s=0.1):
    """Run ``command`` in a new process group; return ``(exit code, signal)``.

    SIGINT and SIGTERM received meanwhile are sent on to the whole group (the
    script, its ``train.py``), and then the call returns only when no process
    of the group is left; ``signal`` is the first one received, or None.
    """
    received, started = [], []

    def forward(signum, frame):
        received.append(signum)
        for proc in started:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)  # (the script gets the defaults)
    except ValueError:  # not the main thread: nothing to forward
        pass
    try:
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        started.append(proc)
        if received:  # a signal came before the group existed
            os.killpg(proc.pid, received[0])
        code = proc.wait()
        while received and _group_alive(proc.pid):
            time.sleep(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, (received[0] if received else None)


def run_unit(unit, env_overrides):
    """Run the unit's steps not finished at planning, in order (one submitit job).

    Each step is its script (:func:`run_step`), which skips a finished run
    itself; its output goes to the job's log. A failing step stops the unit
    with StepFailed, a signal with StepInterrupted.
    """
    env = script_env(env_overrides)
    for step in unit.todo:
        print("==> {}".format(" ".join(step.command)), flush=True)
        code, stopped_by = run_step(step.command, env)
        if stopped_by is not None:
            raise StepInterrupted("{} {} stopped by {}; its log: {}".format(
                unit.name, step.phase, signal.Signals(stopped_by).name, step.log))
        if code != 0:
            raise StepFailed("{} {} failed (exit {}); its log: {}".format(
                unit.name, step.phase, code, step.log))
    return [s.run_dir for s in unit.steps]
