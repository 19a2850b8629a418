"""Running units with submitit: on this machine, or as a Slurm job array.

- :func:`run_local`: submitit's ``LocalExecutor``, one job per slot; a slot
  is a visible GPU (the job's scripts see only it: ``CUDA_VISIBLE_DEVICES``
  set to that GPU) or, with no GPU, one of ``--jobs`` CPU slots. A unit starts when a slot is free;
  failures are collected, the other units go on.
- :func:`submit_slurm`: submitit's ``SlurmExecutor``, every unit one task of
  one array (``#SBATCH --array=0-N%PARALLEL``), with the partition, time,
  GPUs, ... given on the command line or in a YAML file.

Each submitit job runs :func:`clipwb.grid.plan.run_unit`; its stdout / stderr
are submitit's ``<folder>/<job id>_0_log.out`` / ``.err``.

SIGINT (Ctrl-C) or SIGTERM to a local grid stops it: no unit starts any more,
each running job gets SIGTERM (submitit's job controller passes it to the
job, which passes it to its script's process group: ``train.py`` stops after
its current step, saying how to resume), and :func:`run_local` returns once
they have all ended. The jobs are started with SIGINT ignored, so a Ctrl-C
in the terminal reaches them only this way (submitit's controller would
otherwise kill its job at once, leaving the script running).
"""
import os
import signal
import subprocess
import time

from clipwb.errors import UserInputError

from .plan import run_unit

#: local jobs never time out by themselves (submitit's default is 2 minutes)
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


def visible_gpus(env=None):
    """The GPUs the jobs may use, as CUDA_VISIBLE_DEVICES values: the entries
    of CUDA_VISIBLE_DEVICES when it is set, else one per ``nvidia-smi -L``
    line; [] without GPUs."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(l for l in out.stdout.splitlines()
                                            if l.startswith("GPU "))]


def gpu_slots(gpus, per_job=1):
    """The local slots: ``gpus`` in groups of ``per_job`` (each a
    CUDA_VISIBLE_DEVICES value such as "0,1"; GPUs left over are not used).
    Without GPUs, CPU slots (a unit's ranks then share the CPU)."""
    gpus = list(gpus)
    if per_job <= 1 or not gpus:
        return gpus
    if len(gpus) < per_job:
        raise UserInputError("--gpus-per-job {} needs {} GPUs, but {} are given or visible "
                             "({}): lower --gpus-per-job or pass more --gpus.".format(
                                 per_job, per_job, len(gpus), ", ".join(gpus)))
    return [",".join(gpus[i:i + per_job]) for i in range(0, len(gpus) - per_job + 1, per_job)]


class Outcome:
    """What became of a unit: ``ok``, or ``error`` (one line) and the job's logs."""

    def __init__(self, unit, job=None, error=None):
        self.unit, self.job, self.error = unit, job, error

    @property
    def ok(self):
        return self.error is None

    @property
    def job_log(self):
        return str(self.job.paths.stdout) if self.job is not None else ""


def _outcome(unit, job):
    try:
        job.result()
        return Outcome(unit, job)
    except Exception as err:  # submitit re-raises the job's error (or its own)
        lines = [line for line in str(err).splitlines() if line.strip()]
        failed = [line.split(unit.name + " ", 1)[-1] for line in lines if "failed (exit" in line]
        return Outcome(unit, job, (failed or lines or [type(err).__name__])[-1].strip())


class Interrupted(Exception):
    """The grid was stopped by ``signum`` (SIGINT or SIGTERM); ``stopped``:
    the units that were running (all have ended), ``not_started``: the rest."""

    def __init__(self, signum, stopped=(), not_started=()):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.stopped, self.not_started = signum, list(stopped), list(not_started)


class _Signals:
    """While the grid runs its jobs: SIGINT / SIGTERM are remembered, not raised."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = []
        self.previous = {}

    def _on_signal(self, signum, frame):
        self.received.append(signum)

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def _submit_ignoring_sigint(executor, *args):
    """``executor.submit(*args)`` with SIGINT ignored, which the job's
    processes inherit (the grid passes signals on itself)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        return executor.submit(*args)
    try:
        return executor.submit(*args)
    finally:
        signal.signal(signal.SIGINT, previous)


def _terminate(job):
    """SIGTERM to a local job's controller (it passes it on to the job)."""
    try:
        os.kill(int(job.job_id), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        pass


def run_local(units, env_overrides, folder, gpus, cpu_jobs=1, poll_s=1.0, echo=print,
              resend_s=5.0):
    """Run ``units`` on this machine; return their :class:`Outcome` s (grid order).

    On SIGINT / SIGTERM: stop the running jobs, wait for them, raise
    :class:`Interrupted` (see the module docstring)."""
    import submitit

    slots = list(gpus) or [None] * max(1, int(cpu_jobs))
    executor = submitit.LocalExecutor(folder=folder)
    pending = list(enumerate(units))
    running = {}  # slot index -> (unit index, job)
    outcomes = {}
    with _Signals() as signals:
        while (pending or running) and not signals.received:
            for slot, gpu in enumerate(slots):
                if slot in running or not pending or signals.received:
                    continue
                index, unit = pending.pop(0)
                executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
                env = dict(env_overrides, CUDA_VISIBLE_DEVICES="" if gpu is None else gpu)
                job = _submit_ignoring_sigint(executor, run_unit, unit, env)
                echo("started {} (job {}{}; log {})".format(
                    unit.name, job.job_id, "" if gpu is None else ", GPU " + gpu,
                    job.paths.stdout))
                running[slot] = (index, job)
            for slot, (index, job) in list(running.items()):
                if job.done():
                    outcomes[index] = _outcome(units[index], job)
                    del running[slot]
                    echo("{} {}".format("finished" if outcomes[index].ok else "FAILED",
                                        units[index].name))
            if running and not signals.received:
                time.sleep(poll_s)
        if signals.received:
            stopped = [units[index] for index, _ in running.values()]
            # a job still starting ignores SIGTERM until its unit runs: say it again
            last = None
            while any(not job.done() for _, job in running.values()):
                if last is None or time.monotonic() - last >= resend_s:
                    for _, job in running.values():
                        if not job.done():
                            _terminate(job)
                    last = time.monotonic()
                time.sleep(min(poll_s, 0.2))
            raise Interrupted(signals.received[0], stopped, [u for _, u in pending])
    return [outcomes[i] for i in range(len(units))]


#: the Slurm settings the command line names (SlurmExecutor's parameter names)
SLURM_KEYS = ("partition", "time", "gpus_per_node", "cpus_per_task", "mem", "account", "qos",
              "constraint", "array_parallelism", "job_name", "setup")


def slurm_parameters(yaml_file=None, **given):
    """SlurmExecutor parameters: the YAML file's, then the command line's (not None)."""
    params = {}
    if yaml_file:
        import yaml

        try:
            with open(yaml_file) as f:
                loaded = yaml.safe_load(f) or {}
        except OSError as err:
            raise UserInputError("--slurm-config {}: {}.".format(yaml_file, err.strerror)) from None
        if not isinstance(loaded, dict):
            raise UserInputError("--slurm-config {} must be a mapping of SlurmExecutor "
                                 "parameters (partition: gpu, time: 600, ...).".format(yaml_file))
        params.update(loaded)
    params.update({k: v for k, v in given.items() if v is not None})
    params.setdefault("job_name", "clipwb-grid")
    params.setdefault("gpus_per_node", 1)
    return params


def check_slurm():
    """Stop with one sentence unless Slurm's sbatch and srun are on PATH."""
    import shutil

    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise UserInputError("--executor slurm needs {} on PATH: run the grid on a machine of "
                             "the Slurm cluster (a login node).".format(" and ".join(missing)))


def submit_slurm(units, env_overrides, folder, params):
    """Submit ``units`` as one Slurm job array; return the submitit jobs."""
    import submitit

    check_slurm()
    executor = submitit.SlurmExecutor(folder=folder)
    try:
        executor.update_parameters(**params)
    except (TypeError, ValueError) as err:
        raise UserInputError("Slurm settings {}: {}".format(sorted(params), err)) from None
    with executor.batch():
        jobs = [executor.submit(run_unit, unit, env_overrides) for unit in units]
    return jobs


def wait_slurm(units, jobs, poll_s=60.0):
    """Wait for the array; return the :class:`Outcome` s."""
    while not all(job.done() for job in jobs):
        time.sleep(poll_s)
    return [_outcome(unit, job) for unit, job in zip(units, jobs)]
