"""Expanding a grid into the scripts' own jobs.

A *step* is one run of a method's script (``bash scripts/<method>/<job>.sh
ARGS``); a *unit* is the steps that must run in order on one machine (the
test after the train it evaluates). The run folder and whether a step is
finished come from the script itself, run with ``CLIPWB_PLAN=1``
(``scripts/common.sh``: it prints ``plan: run DIR`` or ``plan: done DIR`` and
runs nothing), so this module knows no output layout and no config name.
"""
import os
import subprocess
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
    if proc.returncode != 0 or len(lines) != 1:
        reason = (proc.stderr.strip().splitlines() or ["no plan line"])[-1]
        if reason.startswith("error: "):
            reason = reason[len("error: "):]
        raise UserInputError("bash scripts/{}/{} {} cannot run: {}".format(
            step.method, os.path.basename(step.script), " ".join(map(str, step.args)), reason))
    state, _, run_dir = lines[0][len("plan: "):].partition(" ")
    step.run_dir, step.done = run_dir, state == "done"
    return step


def plan(units, env, workers=8):
    """Fill in every step's run folder and state (``workers`` scripts at a time)."""
    steps = [s for u in units for s in u.steps]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda s: plan_step(s, env), steps))
    return units


class StepFailed(RuntimeError):
    """A step of a unit exited non-zero (the message names its log)."""


def run_unit(unit, env_overrides):
    """Run the unit's steps not finished at planning, in order (one submitit job).

    Each step is its script, which skips a finished run itself; its output
    goes to the job's log. A failing step stops the unit with StepFailed.
    """
    env = script_env(env_overrides)
    for step in unit.todo:
        print("==> {}".format(" ".join(step.command)), flush=True)
        code = subprocess.call(step.command, env=env)
        if code != 0:
            raise StepFailed("{} {} failed (exit {}); its log: {}".format(
                unit.name, step.phase, code, step.log))
    return [s.run_dir for s in unit.steps]
