"""Exact resume, a log on disk up to a kill, and a clean Ctrl-C: the trainer
mixin every method's base uses (before Dassl's ``TrainerX`` in the bases).

**The run state.** At the start of every epoch after the first one run, the
trainer writes ``OUTPUT_DIR/run_state.pth``: the state at the end of the
epoch just finished, written to a temporary file and moved into place
(``os.replace``, :mod:`clipwb.engine.builtin.utils.atomic`), so a kill leaves
the previous state whole and a full disk is one sentence naming the file. It
holds, for every registered model, the weights, optimizer and scheduler; the
GradScaler; the method's accumulators
(:meth:`ResumableTrainer.extra_run_state`: PromptSRC / DiSa's GPA sum;
GuiDG's BMA average is a registered model); the train sampler's position
(a sampler with ``state_dict``); the best validation result; and the
random-number states of Python, NumPy, torch and CUDA. It is
apart from the CoOp-family checkpoints (``<model>/model.pth.tar-<epoch>``,
which stay exactly as Dassl writes them) and is deleted when training ends.

**Resume.** Dassl's ``before_train`` calls ``resume_model_if_exist``; here it
first lets Dassl resume from its checkpoints, then loads the run state when it
is at least as far. A model folder without its ``checkpoint`` pointer file is
a checkpoint save cut short (a kill, a full disk: the pointer is written last,
every file atomically): Dassl's checkpoints are skipped and the run resumes
from the run state alone (or starts again when the folder holds only
temporary files and there is no run state). The random states are put back
at the start of the first epoch run, after ``before_train``'s own work
(DiSa's prototype pass draws random numbers), so a run killed and started
again with the same command logs the same per-iteration losses and ends with
the same accuracy as one never stopped.

**Log and interrupts.** The trainer makes the log file of Dassl's ``Logger``
line-buffered (every printed line is on disk at once, on real Dassl too), and
Ctrl-C or SIGTERM during training stops after the current step with one line
saying how to resume (exit status 130).
"""
import os
import os.path as osp
import random
import signal
import time

import numpy as np
import torch

from clipwb import runlog
from clipwb.engine import AverageMeter, MetricMeter, distributed
from clipwb.engine.builtin.utils.atomic import TMP_SUFFIX, save_atomically
from clipwb.engine.distributed_trainer import DistributedTrainer
from clipwb.engine.progress import MovingEta, batches_left, report_batch
from clipwb.errors import ClearResumeErrors, resume_errors

RUN_STATE_FILE = "run_state.pth"
RUN_STATE_FORMAT = 1


def random_states():
    """The random-number states of Python, NumPy, torch and every CUDA device."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_random_states(states):
    """Put back what :func:`random_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _state_dict(obj):
    return obj.state_dict() if obj is not None else None


def scheduler_state(sched):
    """``sched.state_dict()`` with a warmup wrapper's successor as its state
    dict: real Dassl's wrappers keep the successor object, which pickles a copy
    of the optimizer, so a successor loaded back would step that copy."""
    state = sched.state_dict()
    successor = state.get("successor")
    if hasattr(successor, "state_dict"):
        state = dict(state, successor=successor.state_dict())
    return state


def load_scheduler_state(sched, state):
    """Load :func:`scheduler_state` into ``sched``, keeping its live successor."""
    state = dict(state)
    successor = state.pop("successor", None)
    if hasattr(successor, "state_dict"):
        successor = successor.state_dict()
    sched.load_state_dict(state)
    if successor is not None and getattr(sched, "successor", None) is not None:
        sched.successor.load_state_dict(successor)


class ResumableTrainer(DistributedTrainer, ClearResumeErrors):
    """Trainer mixin: exact resume from ``run_state.pth``, a moving-average
    ETA, a line-buffered log and a one-line Ctrl-C (see the module docstring);
    on both engines, torchrun runs through
    :class:`~clipwb.engine.distributed_trainer.DistributedTrainer` (ahead of
    real Dassl's ``TrainerX``; the built-in ``SimpleTrainer`` has it)."""

    run_state_file = RUN_STATE_FILE
    #: whether the method gives the single-process result on several processes
    #: (torchrun): its losses are means over the images of the batch, or it
    #: reduces its batch statistics over the ranks; checked per method and
    #: set by the method's own class (a subclass does not inherit it)
    torchrun_ready = False

    # -- what a method adds -----------------------------------------------------
    def extra_run_state(self):
        """The method's own state that lives across epochs (a dict); default none."""
        return {}

    def load_extra_run_state(self, state):
        """Put back what :meth:`extra_run_state` returned."""

    # -- the state file ------------------------------------------------------------
    def run_state_path(self, directory=None):
        return osp.join(directory or self.output_dir, self.run_state_file)

    def _train_samplers(self):
        loader = getattr(self, "train_loader_x", None)
        found = []
        for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict") \
                    and obj not in found:
                found.append(obj)
        return found

    def run_state(self, finished_epochs):
        """Everything needed to continue after ``finished_epochs`` epochs."""
        models = {}
        for name in self.get_model_names():
            sched = self._scheds[name]
            models[name] = {"state_dict": self._models[name].state_dict(),
                            "optimizer": _state_dict(self._optims[name]),
                            "scheduler": scheduler_state(sched) if sched is not None else None}
        return {
            "format": RUN_STATE_FORMAT,
            "trainer": type(self).__name__,
            "epoch": finished_epochs,
            "max_epoch": self.max_epoch,
            "models": models,
            "scaler": _state_dict(getattr(self, "scaler", None)),
            "samplers": [s.state_dict() for s in self._train_samplers()],
            "best_result": float(getattr(self, "best_result", -np.inf)),
            "extra": self.extra_run_state(),
            "random": random_states(),
        }

    def save_run_state(self, finished_epochs):
        if not distributed.is_main():  # rank 0 writes; every rank's draws are equal
            return
        os.makedirs(self.output_dir, exist_ok=True)
        save_atomically(self.run_state(finished_epochs), self.run_state_path())

    def load_run_state(self, state):
        """Load a :meth:`run_state` into the trainer; return its finished epochs."""
        if state.get("format") != RUN_STATE_FORMAT or state.get("trainer") != type(self).__name__:
            raise ValueError("written by {} (format {}), not by this {}".format(
                state.get("trainer"), state.get("format"), type(self).__name__))
        if set(state["models"]) != set(self.get_model_names()):
            raise KeyError("models {} against {}".format(sorted(state["models"]),
                                                        self.get_model_names()))
        for name, saved in state["models"].items():
            self._models[name].load_state_dict(saved["state_dict"])
            if self._optims[name] is not None and saved["optimizer"] is not None:
                self._optims[name].load_state_dict(saved["optimizer"])
            if self._scheds[name] is not None and saved["scheduler"] is not None:
                load_scheduler_state(self._scheds[name], saved["scheduler"])
        scaler = getattr(self, "scaler", None)
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        for sampler, saved in zip(self._train_samplers(), state["samplers"]):
            sampler.load_state_dict(saved)
        self.best_result = state["best_result"]
        self.load_extra_run_state(state["extra"])
        self._pending_random_states = state["random"]
        return state["epoch"]

    def saves_cut_short(self, directory):
        """The model folders in ``directory`` without a ``checkpoint`` file: a
        save stopped before its end (the folder is made first, the pointer
        file written last)."""
        return [osp.join(directory, name) for name in self.get_model_names()
                if osp.isdir(osp.join(directory, name))
                and not osp.isfile(osp.join(directory, name, "checkpoint"))]

    def resume_model_if_exist(self, directory):
        path = self.run_state_path(directory)
        cut_short = self.saves_cut_short(directory)
        only_temporary = all(name.endswith(TMP_SUFFIX) for folder in cut_short
                             for name in os.listdir(folder))
        if cut_short and (osp.isfile(path) or only_temporary):
            # Dassl would stop at the folder without a pointer file.
            print("The checkpoint save in {} was cut short (no \"checkpoint\" file): {}".format(
                ", ".join(cut_short), "resume from the run state" if osp.isfile(path)
                else "no epoch was saved, train from scratch"))
            start_epoch = 0
        else:
            start_epoch = super().resume_model_if_exist(directory)
        if osp.isfile(path):
            with resume_errors(path):
                state = torch.load(path, map_location=self.device, weights_only=False)
                if start_epoch <= state["epoch"] < self.max_epoch:
                    start_epoch = self.load_run_state(state)
                    print(
                        "Found the run state of epoch {} at {}: resume exactly from there "
                        "(weights, optimizer, scheduler, sampler, random state)".format(
                            start_epoch, path))
        return start_epoch

    # -- the loop ------------------------------------------------------------------
    def __init__(self, *args, **kwargs):
        runlog.line_buffered()
        super().__init__(*args, **kwargs)

    def train(self, *args, **kwargs):
        with interrupts_say_how_to_resume(self):
            return super().train(*args, **kwargs)

    def before_epoch(self):
        pending = self.__dict__.pop("_pending_random_states", None)
        if pending is not None:
            set_random_states(pending)
        elif self.epoch > self.start_epoch:
            self.save_run_state(self.epoch)
        super().before_epoch()

    def after_train(self):
        self._training_done = True
        path = self.run_state_path()
        if distributed.is_main() and osp.isfile(path):
            os.remove(path)  # the last epoch's checkpoint holds the finished run
        super().after_train()

    def run_epoch(self):
        """Dassl's ``TrainerX.run_epoch``, with the ETA of :class:`MovingEta`."""
        self.set_model_mode("train")
        losses, batch_time, data_time = MetricMeter(), AverageMeter(), AverageMeter()
        if "_eta" not in self.__dict__:
            self._eta = MovingEta()
        self.num_batches = len(self.train_loader_x)
        self._in_steps = True
        try:
            end = time.time()
            for self.batch_idx, batch in enumerate(self.train_loader_x):
                data_time.update(time.time() - end)
                # (several processes: the mean over the ranks, the global batch's)
                loss_summary = distributed.mean_summary(self.forward_backward(batch))
                batch_time.update(time.time() - end)
                self._eta.update(batch_time.val)
                losses.update(loss_summary)
                report_batch(self, losses, batch_time, data_time,
                             self._eta.seconds_left(batches_left(self)))
                # (torchrun: all ranks stop after the step any of them was stopped in)
                if distributed.any_rank(self.__dict__.get("_stop_requested")):
                    raise KeyboardInterrupt
                end = time.time()
        finally:
            self._in_steps = False

    def interrupt_message(self):
        """The line printed when training is interrupted."""
        if self.__dict__.get("_training_done"):
            return ("Interrupted after training, during the final test: the model is saved; "
                    "run the same command again to test it.")
        epoch = getattr(self, "epoch", 0)
        if epoch > 0 and osp.isfile(self.run_state_path()):
            kept = "the state at the end of epoch {} is kept in {}".format(
                epoch, self.run_state_path())
        else:
            kept = "no epoch had finished, so it will start again"
        return ("Interrupted in epoch {} of {}: {}; run the same command again to "
                "resume.".format(epoch + 1, self.max_epoch, kept))


class interrupts_say_how_to_resume:
    """During training, Ctrl-C and SIGTERM (in the main thread) end the run with
    the trainer's :meth:`~ResumableTrainer.interrupt_message` (to the console
    and the log) and exit status 130, instead of a traceback.

    Inside the training steps the signal only asks the loop to stop after the
    current step (so no printed line is cut in half); a second signal, or one
    outside the steps (the evaluation), stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer):
        self.trainer = trainer
        self.previous = {}

    def _on_signal(self, signum, frame):
        trainer = self.trainer
        if trainer.__dict__.get("_in_steps") and not trainer.__dict__.get("_stop_requested"):
            trainer._stop_requested = True
            return
        raise KeyboardInterrupt

    def __enter__(self):
        self.trainer._stop_requested = False
        for sig in self.SIGNALS:
            try:
                self.previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            print(self.trainer.interrupt_message(), flush=True)
            raise SystemExit(130)
        return False
