"""Learning-rate schedules the trainers build themselves, on real Dassl and
the built-in engine alike.

Dassl steps its schedulers once per epoch. ``OPTIM.LR_SCHEDULER
"cosine_iter"`` is torch's ``CosineAnnealingLR`` over
``OPTIM.COSINE_T_MAX_ITERS`` iterations (0: the run's ``MAX_EPOCH`` x batches
an epoch), stepped after every batch, as GuiDG's official code does (step 1:
``T_max = 31 x 400`` whatever the real step count; step 2: ``10 x 400``).
Past ``T_max`` the cosine goes on, so the rate climbs back up, exactly as the
official code's. Real Dassl's ``build_lr_scheduler`` does not know the name,
so :func:`build_lr_schedule` builds it and hands every other name to Dassl's.
The scheduler is a plain torch one: its state (the iteration count) is saved
and resumed with the run as any other's.
"""
from torch.optim.lr_scheduler import CosineAnnealingLR

from clipwb.engine import build_lr_scheduler
from clipwb.errors import ConfigError

#: schedulers stepped after every batch instead of every epoch
PER_ITERATION = ("cosine_iter",)
#: the names Dassl 0.6.3's ``build_lr_scheduler`` knows (stepped every epoch)
DASSL_SCHEDULERS = ("single_step", "multi_step", "cosine")


def extend_cfg(cfg):
    """Add ``OPTIM.COSINE_T_MAX_ITERS`` (T_max of ``cosine_iter`` in iterations;
    0: ``MAX_EPOCH`` x the batches of an epoch)."""
    if "COSINE_T_MAX_ITERS" not in cfg.OPTIM:
        cfg.OPTIM.COSINE_T_MAX_ITERS = 0
    return cfg


def steps_every_batch(optim_cfg):
    """Whether ``OPTIM.LR_SCHEDULER`` is stepped after every batch."""
    return optim_cfg.LR_SCHEDULER in PER_ITERATION


def cosine_t_max(optim_cfg, iters_per_epoch):
    """T_max of ``cosine_iter`` in iterations."""
    t_max = optim_cfg.get("COSINE_T_MAX_ITERS", 0)
    if not isinstance(t_max, int) or t_max < 0:
        raise ConfigError("OPTIM.COSINE_T_MAX_ITERS = {!r} must be an integer >= 0 (0: "
                          "OPTIM.MAX_EPOCH x the batches of an epoch).".format(t_max))
    return t_max or optim_cfg.MAX_EPOCH * iters_per_epoch


def build_lr_schedule(optimizer, optim_cfg, iters_per_epoch):
    """``cosine_iter`` (see the module docstring), else Dassl's ``build_lr_scheduler``
    (an unknown name is one sentence listing every name, on both engines)."""
    name = optim_cfg.LR_SCHEDULER
    if name not in DASSL_SCHEDULERS + PER_ITERATION:
        raise ConfigError("OPTIM.LR_SCHEDULER = {!r} is not valid: use one of {}.".format(
            name, ", ".join(DASSL_SCHEDULERS + PER_ITERATION)))
    if not steps_every_batch(optim_cfg):
        return build_lr_scheduler(optimizer, optim_cfg)
    if optim_cfg.WARMUP_EPOCH > 0:
        raise ConfigError("OPTIM.LR_SCHEDULER cosine_iter has no warmup: set "
                          "OPTIM.WARMUP_EPOCH -1 (it is {}).".format(optim_cfg.WARMUP_EPOCH))
    t_max = cosine_t_max(optim_cfg, iters_per_epoch)
    print("LR schedule: cosine over {} iterations, stepped after every batch ({} an "
          "epoch)".format(t_max, iters_per_epoch))
    return CosineAnnealingLR(optimizer, T_max=t_max)


class BatchSteppedSchedule:
    """Trainer mixin: ``build_scheduler`` and the scheduler step after a batch
    (every batch for ``cosine_iter``, else after the epoch's last one, as Dassl)."""

    def build_scheduler(self, optimizer):
        return build_lr_schedule(optimizer, self.cfg.OPTIM, len(self.train_loader_x))

    def update_lr_after_batch(self, names=None):
        if steps_every_batch(self.cfg.OPTIM) or (self.batch_idx + 1) == self.num_batches:
            self.update_lr(names)
