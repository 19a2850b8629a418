"""The torchrun layer of a trainer, the same on both engines.

:class:`DistributedTrainer` is a mixin placed ahead of the engine's trainer
classes in the bases: the built-in ``SimpleTrainer`` has it, and so does every
project trainer through :class:`~clipwb.trainers.kit.resumable.ResumableTrainer`
(ahead of real Dassl's ``TrainerX``). Each method wraps the engine's own
(Dassl's behaviour for one process) and adds what several processes need
(the design is in :mod:`clipwb.engine.distributed`):

- ``build_data_loader``: rank 0 builds the data first (it writes the split
  caches, e.g. ``split_fewshot/*.pkl``; the others then read them), then
  every rank takes rank 0's random states (:func:`share_random_states`:
  drawing the few-shot split moved rank 0's, reading it did not); the
  training loaders yield this rank's slice of the global batches
  (:class:`~clipwb.engine.distributed.RankSlices`);
- ``model_backward``: the gradients are averaged over the ranks after
  backward (:meth:`DistributedTrainer.sync_gradients`, which a trainer with
  its own backward calls itself);
- ``save_model`` (checkpoints, ``model-best`` copies) and ``init_writer``
  (tensorboard): rank 0 alone writes; the others wait for the checkpoint;
- ``test``: rank ``r`` evaluates the batches ``r, r + W, ...``; the outputs
  are gathered in batch order and every rank feeds the same evaluator
  (:class:`GatheredEvaluator`), so every rank gets the single-process result
  and rank 0 prints its block. The other ranks print nothing (``train.py``
  drops their console and opens the log on rank 0 only; their progress bars
  and the confusion-matrix file are left out here).

For one process every method is the engine's own.
"""
import contextlib
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from clipwb.engine import distributed

__all__ = ["DistributedTrainer", "GatheredEvaluator", "rank_test_loader",
           "share_random_states"]


def share_random_states():
    """Every rank takes rank 0's Python, NumPy and torch (CPU) random states,
    so that the ranks go on drawing what the single-process run draws (no-op
    for one process)."""
    if not (distributed.is_distributed() and dist.is_initialized()):
        return
    states = [(random.getstate(), np.random.get_state(), torch.get_rng_state())]
    dist.broadcast_object_list(states, src=0)
    python, numpy, torch_cpu = states[0]
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(torch_cpu)


def rank_test_loader(loader):
    """A test loader over this rank's batches ``r, r + W, ...`` of ``loader``
    (None stays None)."""
    if loader is None:
        return None
    batches = list(loader.batch_sampler)[distributed.rank()::distributed.world_size()]
    return torch.utils.data.DataLoader(
        loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory)


def _to(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else value


class GatheredEvaluator:
    """Stands in for the trainer's evaluator during a shared test: keeps this
    rank's ``(output, label)`` batches; ``evaluate`` gathers every rank's in
    batch order, feeds them to the real evaluator and returns its result (on
    every rank). Only rank 0 saves the confusion matrix
    (``TEST.COMPUTE_CMAT``)."""

    def __init__(self, evaluator):
        self.evaluator = evaluator
        self.batches = []
        self.device = None

    def reset(self):
        self.evaluator.reset()
        self.batches = []

    def process(self, output, label):
        self.device = output.device if isinstance(output, torch.Tensor) else None
        self.batches.append((_to(output, "cpu"), _to(label, "cpu")))

    def evaluate(self):
        device = self.device or "cpu"
        for output, label in distributed.gather_in_order(self.batches):
            self.evaluator.process(_to(output, device), _to(label, device))
        cfg = getattr(self.evaluator, "cfg", None)
        if distributed.is_main() or cfg is None or not cfg.TEST.COMPUTE_CMAT:
            return self.evaluator.evaluate()
        quiet = cfg.clone()
        quiet.defrost()
        quiet.TEST.COMPUTE_CMAT = False
        self.evaluator.cfg = quiet
        try:
            return self.evaluator.evaluate()
        finally:
            self.evaluator.cfg = cfg

    def __getattr__(self, name):
        return getattr(self.__dict__["evaluator"], name)


@contextlib.contextmanager
def _quiet_unless_main():
    """Drop this block's error-stream output (progress bars) on a rank other
    than 0 (its console is already dropped; rank 0 shows the same)."""
    if distributed.is_main():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


class DistributedTrainer:
    """Trainer mixin (ahead of the engine's trainer class in the bases): a
    torchrun run gives the single-process result (see the module docstring);
    for one process each method is the engine's own."""

    def build_data_loader(self):
        with distributed.main_first():  # rank 0 writes the split caches
            super().build_data_loader()
        share_random_states()
        if distributed.is_distributed():
            self.train_loader_x = distributed.RankSlices(self.train_loader_x)
            if getattr(self, "train_loader_u", None) is not None:
                self.train_loader_u = distributed.RankSlices(self.train_loader_u)

    def learnable_parameters(self, names=None):
        """The parameters the optimizers update: the registered models' (or
        those of ``names``) that require a gradient. A trainer whose
        optimizer holds others (DePT's ``NAMES_TO_UPDATE``) says so here."""
        return [p for name in self.get_model_names(names)
                for p in self._models[name].parameters() if p.requires_grad]

    def sync_gradients(self, names=None):
        """Average the gradients of :meth:`learnable_parameters` over the
        ranks of a torchrun run (no-op for one process)."""
        distributed.average_gradients(self.learnable_parameters(names))

    def model_backward(self, loss):
        super().model_backward(loss)
        self.sync_gradients()

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        """The engine's checkpoints, written by rank 0; the others wait for them."""
        if distributed.is_main():
            super().save_model(epoch, directory, is_best=is_best, val_result=val_result,
                               model_name=model_name)
        distributed.barrier()

    def init_writer(self, log_dir):
        if distributed.is_main():
            super().init_writer(log_dir)

    @torch.no_grad()
    def test(self, split=None):
        if not distributed.is_distributed():
            return super().test(split)
        kept = (self.evaluator, getattr(self, "val_loader", None), self.test_loader)
        self.evaluator = GatheredEvaluator(kept[0])
        self.val_loader, self.test_loader = rank_test_loader(kept[1]), rank_test_loader(kept[2])
        try:
            with _quiet_unless_main():
                return super().test(split)
        finally:
            self.evaluator, self.val_loader, self.test_loader = kept
