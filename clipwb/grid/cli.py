"""``python -m scripts.grid``: run a paper grid through the method scripts and submitit.

Examples::

    python -m scripts.grid --methods disa isp promptsrc --datasets all --seeds 1 2 3 --dry-run
    python -m scripts.grid --methods disa isp --datasets all --seeds 1 2 3          # local GPUs
    python -m scripts.grid --methods disa --datasets all --seeds 1 2 3 \\
        --executor slurm --partition gpu --time 600 --gpus-per-job 1

Finished runs (the scripts' own test: the final checkpoint and the accuracy
line) are skipped; the rest run as units (train, then the test on it) with
submitit; a failed unit is reported with its logs and the others go on; the
results table (scripts/results.py) ends the run. A unit whose folder another
live process is writing (the scripts' lock) is not started and is reported.
Ctrl-C or SIGTERM stops the running jobs (their train.py stops after its
current step), waits for them and ends with one line.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

from clipwb.errors import UserInputError

from . import executors, plan

#: the scripts' environment settings the command line can set
ENV_FLAGS = (("data", "DATA"), ("output", "OUTPUT"), ("shots", "SHOTS"), ("cfg", "CFG"),
             ("backbone", "BACKBONE"), ("opts", "OPTS"), ("tag", "TAG"))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m scripts.grid", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", required=True,
                   help="script folders under scripts/ (disa isp promptsrc coop ...)")
    p.add_argument("--datasets", nargs="+", required=True,
                   help="dataset config names, or 'all' (the 11 base-to-novel datasets)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--setting", default="base2new", choices=sorted(plan.SETTINGS))
    p.add_argument("--executor", default="local", choices=("local", "slurm"))
    p.add_argument("--dry-run", action="store_true",
                   help="list the jobs and their state; run nothing")
    p.add_argument("--log-dir", help="submitit's folder [OUTPUT/grid_logs/<time>]")
    env = p.add_argument_group("the scripts' settings (default: the environment's, as for "
                               "the scripts)")
    env.add_argument("--data", help="DATA")
    env.add_argument("--output", help="OUTPUT [output]")
    env.add_argument("--shots", help="SHOTS [16]")
    env.add_argument("--cfg", help="CFG (a config name every method has, or a .yaml path)")
    env.add_argument("--backbone", help="BACKBONE")
    env.add_argument("--opts", help="OPTS: extra KEY VALUE pairs for every train.py")
    env.add_argument("--tag", help="TAG: run every job in a variant folder of this name")
    p.add_argument("--gpus-per-job", type=int, dest="gpus_per_node",
                   help="GPUs of each unit, whose train.py runs on them with torchrun "
                        "(the scripts' NPROC) [1]")
    local = p.add_argument_group("local executor")
    local.add_argument("--gpus", nargs="+",
                       help="GPUs to use, one job each [the visible ones]; 'none': CPU jobs")
    local.add_argument("--jobs", type=int, default=1,
                       help="CPU jobs at a time when there is no GPU [1]")
    slurm = p.add_argument_group("slurm executor (the YAML's keys: SlurmExecutor's parameters)")
    slurm.add_argument("--slurm-config", help="YAML file of Slurm settings (partition, time, ...)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=int, help="minutes per job")
    slurm.add_argument("--cpus-per-job", type=int, dest="cpus_per_task")
    slurm.add_argument("--mem", help="e.g. 32G")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--max-parallel", type=int, dest="array_parallelism",
                       help="array tasks running at once")
    slurm.add_argument("--no-wait", action="store_true",
                       help="return after submitting (the table: run the command again when "
                            "the array has ended)")
    return p.parse_args(argv)


def env_overrides(args):
    """The scripts' environment the jobs get: the command line's settings
    (``--gpus-per-job N`` > 1: ``NPROC=N``, each run on N processes)."""
    overrides = {var: getattr(args, name) for name, var in ENV_FLAGS
                 if getattr(args, name) is not None}
    per_job = getattr(args, "gpus_per_node", None)
    if per_job is not None and per_job < 1:
        raise UserInputError("--gpus-per-job {} must be at least 1.".format(per_job))
    if per_job and per_job > 1:
        overrides["NPROC"] = str(per_job)
    return overrides


def output_root(env):
    return env.get("OUTPUT") or os.environ.get("OUTPUT") or "output"


def print_plan(units, repo, echo):
    steps = [s for u in units for s in u.steps]
    todo = [s for s in steps if not s.done]
    echo("{} job(s): {} to run, {} finished".format(len(steps), len(todo), len(steps) - len(todo)))
    for s in steps:
        run_dir = s.run_dir
        if os.path.isabs(run_dir) and run_dir.startswith(repo + os.sep):
            run_dir = os.path.relpath(run_dir, repo)
        state = "busy" if s.busy else "done" if s.done else "todo"
        echo("  [{}] {:<40} {}".format(state, s.describe(repo), run_dir))


def report(outcomes, echo):
    """Print the failed units with their logs; return how many failed."""
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        echo("FAILED {}: {} (job log: {})".format(o.unit.name, o.error, o.job_log))
    return len(failed)


def report_busy(units, echo):
    """Print the units not started because another process writes their
    folder; return how many."""
    busy = [u for u in units if u.busy]
    for u in busy:
        echo("NOT STARTED {}: {}".format(u.name, u.busy))
    return len(busy)


def interrupted_line(err):
    """The one line of a grid stopped by a signal."""
    name = signal.Signals(err.signum).name
    if not err.stopped and not err.not_started:
        return "interrupted by {}: no local job was running.".format(name)
    return ("interrupted by {}: stopped {} running unit(s) ({}), {} not started; run the "
            "same command again to resume them.".format(
                name, len(err.stopped), ", ".join(u.name for u in err.stopped) or "none",
                len(err.not_started)))


def results_table(repo, env, args, units, echo):
    root = os.path.join(output_root(env), plan.RESULTS_ROOT[args.setting])
    root = root if os.path.isabs(root) else os.path.join(repo, root)
    cmd = [sys.executable, os.path.join(repo, "scripts", "results.py"), root,
           "--setting", plan.RESULTS_SETTING[args.setting],
           "--dataset"] + sorted({u.steps[0].dataset for u in units}) + [
           "--seed"] + [str(s) for s in args.seeds]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    echo(proc.stdout.rstrip())
    if proc.returncode != 0:
        echo(proc.stderr.rstrip())


def main(argv=None, repo=None, echo=print):
    repo = os.path.abspath(repo or os.getcwd())
    args = parse_args(argv)
    if args.executor == "slurm" and not args.dry_run:
        executors.check_slurm()
    overrides = env_overrides(args)
    env = plan.script_env(overrides)
    units = plan.plan(plan.expand(repo, args.methods, args.datasets, args.seeds, args.setting),
                      env)
    print_plan(units, repo, echo)
    if args.dry_run:
        return 0
    todo = [u for u in units if u.todo and not u.busy]
    if todo:
        folder = args.log_dir or os.path.join(repo if not os.path.isabs(output_root(env)) else "",
                                              output_root(env), "grid_logs",
                                              time.strftime("%Y-%m-%d-%H-%M-%S"))
        if args.executor == "local":
            gpus = [] if args.gpus == ["none"] else (args.gpus or executors.visible_gpus())
            slots = executors.gpu_slots(gpus, args.gpus_per_node or 1)
            outcomes = executors.run_local(todo, overrides, folder, slots, args.jobs, echo=echo)
        else:
            params = executors.slurm_parameters(
                args.slurm_config, **{k: getattr(args, k, None) for k in executors.SLURM_KEYS})
            jobs = executors.submit_slurm(todo, overrides, folder, params)
            echo("submitted {} job(s) as Slurm array {} (logs in {})".format(
                len(jobs), jobs[0].job_id.split("_")[0], folder))
            if args.no_wait:
                return 0
            outcomes = executors.wait_slurm(todo, jobs)
        failed = report(outcomes, echo)
    else:
        failed = 0
    failed += report_busy(units, echo)
    results_table(repo, env, args, units, echo)
    return 1 if failed else 0


def _sigterm_interrupts(signum, frame):
    raise executors.Interrupted(signum)


def run(argv=None, repo=None):
    """Entry point: bad input is one line on stderr and exit status 2; SIGINT /
    SIGTERM one line and exit status 128 + the signal's number."""
    previous = signal.signal(signal.SIGTERM, _sigterm_interrupts)
    try:
        return main(argv, repo)
    except UserInputError as err:
        print("error: {}".format(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        err = executors.Interrupted(signal.SIGINT)
    except executors.Interrupted as caught:
        err = caught
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(interrupted_line(err), file=sys.stderr, flush=True)
    return 128 + err.signum
