"""One run on several processes, launched by ``torchrun``.

``torchrun --nproc_per_node N train.py ...`` starts N copies of ``train.py``
with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. Without
them (a plain ``python train.py``) everything here is a no-op for one process.

Design (equal to the single-process run, step for step):

- ``DATALOADER.TRAIN_X.BATCH_SIZE`` is the **global** batch, the single-GPU
  batch of the published recipes. Every rank draws the same global batches
  (same seed, same sampler, same augmentation draws: each rank loads the
  whole global batch) and keeps its own contiguous slice
  (:class:`RankSlices`), so the ranks together see exactly the batch the
  one-process run sees.
- After ``backward`` the gradients of the learnable parameters are averaged
  over the ranks (:func:`average_gradients`, what ``DistributedDataParallel``
  does, as one flat all-reduce). With equal slices, the mean of the ranks'
  mean losses is the mean loss over the global batch, so the averaged
  gradient is the global batch's gradient:
  ``grad (1/B) sum_i l_i = (1/W) sum_r grad (W/B) sum_{i in slice r} l_i``.
- The logged loss terms are the same mean over the ranks
  (:func:`mean_summary`): the global batch's mean.
- Rank 0 alone writes logs, tensorboard, checkpoints, run state and split
  caches (:func:`is_main`, :func:`main_first`); the other ranks print nothing.
- Evaluation: rank ``r`` runs the test batches ``r, r + W, ...``; the outputs
  are gathered in batch order (:func:`gather_in_order`) and every rank feeds
  the same evaluator, so rank 0 prints the single-process evaluator block.
"""
import contextlib
import os

import torch
import torch.distributed as dist

from clipwb.errors import ConfigError

__all__ = ["world_size", "rank", "local_rank", "is_distributed", "is_main", "init",
           "shutdown", "silence_other_ranks", "let_main_report", "describe",
           "shared_seed",
           "barrier", "main_first", "check_launch", "global_batch", "check_global_batch",
           "RankSlices", "slice_batch",
           "average_gradients", "mean_summary", "any_rank", "gather_in_order",
           "average_tensors", "gather_batch", "rank_share", "scaled_backward",
           "mean_over_ranks"]


def world_size():
    """The number of processes of the run (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank():
    """This process's rank (``RANK``; 0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def local_rank():
    """This process's rank on its machine (``LOCAL_RANK``): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed():
    return world_size() > 1


def is_main():
    """Whether this process writes the run's files and prints (rank 0)."""
    return rank() == 0


def init(use_cuda):
    """Join the process group (nccl on GPUs, gloo on the CPU) once; on GPUs
    bind this process to GPU ``LOCAL_RANK``. A no-op for one process."""
    if not is_distributed() or (dist.is_available() and dist.is_initialized()):
        return
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo")


def shutdown():
    """Leave the process group (end of a torchrun run)."""
    if _active():
        dist.destroy_process_group()


def silence_other_ranks():
    """Rank 0 prints; the other ranks' console output is dropped."""
    if not is_main():
        import sys

        sys.stdout = open(os.devnull, "w")


def shared_seed(seed):
    """``seed``, or without a fixed seed (``SEED < 0``) under torchrun one
    drawn by rank 0 for every rank: the ranks must draw the same global
    batches and initial prompts. Returns ``seed`` unchanged otherwise."""
    if seed >= 0 or not _active():
        return seed
    value = torch.randint(0, 2 ** 31 - 1, (1,), dtype=torch.int64,
                          generator=torch.Generator().manual_seed(int.from_bytes(
                              os.urandom(4), "little"))).to(_comm_device())
    dist.broadcast(value, src=0)
    return int(value.item())


def let_main_report(seconds=5.0):
    """On a rank other than 0, wait ``seconds`` before reporting an error
    every rank meets (a bad config): rank 0 reports it and exits first, and
    torchrun then stops this rank, so the sentence is printed once."""
    if not is_main():
        import time

        time.sleep(seconds)


def describe(batch_size=None):
    """One line saying how the run is spread (None for one process)."""
    if not _active():
        return None
    line = "Running on {} processes (torchrun, {} backend)".format(world_size(),
                                                                 dist.get_backend())
    if batch_size:
        line += "; global batch {}, {} images per process".format(
            batch_size, batch_size // world_size())
    return line


def _active():
    return is_distributed() and dist.is_available() and dist.is_initialized()


def _comm_device():
    """Where the small tensors of a collective live: nccl reduces only CUDA
    tensors (this rank's GPU), gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier():
    if _active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Run the block on rank 0 first, then on the others (a cache rank 0
    writes is read, never written, by the others)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def check_launch(trainer_class, backend, training=True):
    """One sentence when this torchrun run cannot give the single-process
    result: on either engine (``backend``) the trainer needs the torchrun
    layer (:class:`~clipwb.engine.distributed_trainer.DistributedTrainer`:
    the built-in engine's trainers and the project's, not real Dassl's own),
    and a method trains on several processes once checked (``torchrun_ready``)."""
    if not is_distributed():
        return
    from clipwb.engine.distributed_trainer import DistributedTrainer

    if not issubclass(trainer_class, DistributedTrainer):
        raise ConfigError(
            "{} is a trainer of the {} engine without the project's torchrun layer, so it "
            "does not split the batches over processes (torchrun, WORLD_SIZE {}): run it with "
            "one process (python train.py ...).".format(trainer_class.__name__, backend,
                                                        world_size()))
    # (declared by the class itself: a subclass may add batch statistics)
    if training and not vars(trainer_class).get("torchrun_ready", False):
        raise ConfigError(
            "{} does not run on several processes yet (torchrun, WORLD_SIZE {}): run it "
            "with one process (python train.py ...).".format(trainer_class.__name__,
                                                             world_size()))


def global_batch(trainer_class, cfg):
    """``(size, key)`` of the global batch a run of ``trainer_class`` splits
    over the ranks: the class's own ``torchrun_batch(cfg)`` where it has one
    (GuiDG's step 2: images per domain x source domains), else
    ``DATALOADER.TRAIN_X.BATCH_SIZE``."""
    own = getattr(trainer_class, "torchrun_batch", None)
    if own is not None:
        return own(cfg)
    return cfg.DATALOADER.TRAIN_X.BATCH_SIZE, "DATALOADER.TRAIN_X.BATCH_SIZE"


def check_global_batch(batch_size, key="DATALOADER.TRAIN_X.BATCH_SIZE", world=None):
    """Raise one sentence unless the global batch splits evenly over the ranks."""
    world = world_size() if world is None else world
    if world <= 1 or batch_size % world == 0:
        return
    if world > batch_size:
        raise ConfigError(
            "torchrun --nproc_per_node {} starts more processes than the global batch "
            "{} {} has images: use at most {} processes.".format(world, key, batch_size,
                                                                 batch_size))
    raise ConfigError(
        "{} {} is the global batch (the single-process recipe's) and must split evenly "
        "over the {} processes: use a --nproc_per_node that divides {}.".format(
            key, batch_size, world, batch_size))


def slice_batch(batch, index, world):
    """Rank ``index``'s contiguous share of a batch dict (tensors and lists
    are cut along their first dimension; other values are kept)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, (torch.Tensor, list, tuple)):
            n = len(value)
            if n % world:
                check_global_batch(n, "the batch of {} images".format(n), world)
            value = rank_share(value, index, world)
        out[key] = value
    return out


class RankSlices:
    """A training loader whose batches are this rank's slice of the global
    batches (every other attribute is the wrapped loader's)."""

    def __init__(self, loader, index=None, world=None, batch_size=None,
                 key="DATALOADER.TRAIN_X.BATCH_SIZE"):
        self.loader = loader
        self.index = rank() if index is None else index
        self.world = world_size() if world is None else world
        # the global batch and its name in a sentence (default: the loader's
        # own; give it for a loader driven by a batch sampler)
        self.batch_size, self.key = batch_size, key
        if batch_size is not None:
            check_global_batch(batch_size, key, world=self.world)

    def __iter__(self):
        if self.batch_size is None:
            # (checked when used: a trainer may replace the loader it was given)
            check_global_batch(self.loader.batch_size, self.key, world=self.world)
        for batch in self.loader:
            yield slice_batch(batch, self.index, self.world)

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.__dict__["loader"], name)


def average_gradients(parameters):
    """Average the gradients of ``parameters`` over the ranks in place (one
    flat all-reduce, :func:`average_tensors`). Every rank must hold a
    gradient for the same parameters (they run the same code on equal
    slices)."""
    average_tensors([p.grad for p in parameters])


def mean_summary(summary):
    """A loss summary dict with each value the mean over the ranks."""
    if not _active() or not summary:
        return summary
    keys = list(summary)
    values = torch.tensor([float(summary[k]) for k in keys], dtype=torch.float64,
                          device=_comm_device())
    dist.all_reduce(values)
    values /= world_size()
    return {k: v for k, v in zip(keys, values.tolist())}


def any_rank(flag):
    """Whether ``flag`` is true on any rank (every rank gets the same answer,
    so that all stop after the same step when one of them is interrupted)."""
    if not _active():
        return bool(flag)
    value = torch.tensor([1 if flag else 0], device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_in_order(items):
    """All ranks' lists ``items`` (rank r holds the entries r, r + W, ...),
    interleaved back into one list in the original order, on every rank."""
    if not _active():
        return list(items)
    parts = [None] * world_size()
    dist.all_gather_object(parts, list(items))
    merged = []
    for i in range(max(len(p) for p in parts)):
        merged.extend(p[i] for p in parts if i < len(p))
    return merged


def average_tensors(tensors):
    """Average ``tensors`` (a list; None entries are skipped) over the ranks
    in place, as one flat all-reduce (summed in float32, float64 for float64
    tensors); returns the list. For values each rank computes from its slice
    that must become the global batch's before a nonlinear use, e.g. two
    gradients before one is projected against the other: with equal slices
    the mean of the ranks' values is the global batch's. Every rank passes
    tensors of the same shapes (None at the same places)."""
    if not _active():
        return tensors
    present = [t for t in tensors if t is not None]
    if not present:
        return tensors
    wide = torch.float64 if any(t.dtype == torch.float64 for t in present) else torch.float32
    flat = torch.cat([t.detach().reshape(-1).to(wide) for t in present])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for t in present:
        n = t.numel()
        with torch.no_grad():
            t.copy_(flat[offset:offset + n].view_as(t))
        offset += n
    return tensors


def gather_batch(tensor):
    """The global batch's values of a per-sample ``tensor`` (this rank's
    slice along the first dimension): every rank's slice concatenated in
    rank order (the order :class:`RankSlices` cut them from the global
    batch), on every rank, without gradient; ``tensor`` itself for one
    process. A statistic over the batch (a normalisation, a softmax over the
    samples) taken of the result is the single-process run's."""
    if not _active():
        return tensor
    tensor = tensor.detach().contiguous()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def rank_share(tensor, index=None, world=None):
    """This rank's contiguous share of a global-batch ``tensor`` (first
    dimension), the rows :class:`RankSlices` gave it: the inverse of
    :func:`gather_batch`."""
    index = rank() if index is None else index
    world = world_size() if world is None else world
    share = len(tensor) // world
    return tensor[index * share:(index + 1) * share]


def scaled_backward(scaler, loss, parameters):
    """``scaler.scale(loss).backward()`` for a ``GradScaler`` (PREC amp), then
    the gradients of ``parameters`` made the global batch's over the ranks.

    A rank's ``loss`` is the mean over its ``B/W`` images: each image weighs
    ``W`` times its weight ``1/B`` in the single-process mean, so a plain
    scaled backward runs every float16 gradient at ``W`` times the
    single-process magnitude and overflows (the scaler skips the step and
    backs off) at a scale ``W`` times smaller. Here each rank backpropagates
    ``scale * loss / W`` (the one-process magnitudes, so the inf checks skip
    where its do) and the gradients are summed over the ranks:
    ``sum_r grad (scale/W) loss_r = scale * grad (1/B) sum_i l_i``. The
    scaler's state does not depend on ``W`` (a run resumes on any number of
    processes). For one process the plain scaled backward."""
    if not _active():
        scaler.scale(loss).backward()
        return
    world = world_size()
    scaler.scale(loss / world).backward()
    parameters = list(parameters)
    average_gradients(parameters)  # the ranks' mean: the sum / W
    for param in parameters:
        if param.grad is not None:
            param.grad.mul_(world)


class _MeanOverRanks(torch.autograd.Function):
    """``y = (1/W) sum_r x_r`` on every rank; backward: the same mean of the
    ranks' output gradients (each rank's loss depends on ``y`` through every
    rank's ``x_r``)."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out.div_(world_size())

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad.div_(world_size())


def mean_over_ranks(tensor):
    """The mean over the ranks of ``tensor``, a statistic of this rank's
    slice (e.g. its batch mean), differentiably: with equal slices the mean
    of the slices' means is the global batch's mean, and the gradient
    reaching each rank's ``tensor`` is the mean of the ranks' gradients of
    the result, so that after :func:`average_gradients` the parameters get
    the gradient of the mean over the ranks of their losses, the global
    batch's. ``tensor`` itself for one process. Every rank calls it with a
    tensor of the same shape."""
    if not _active():
        return tensor
    return _MeanOverRanks.apply(tensor)
