"""``build_lr_scheduler`` and Dassl's warmup wrappers.

Semantics (Dassl 0.6.3): the successor scheduler is built first. A warmup
wrapper then owns the first ``WARMUP_EPOCH`` epochs -- constant ``cons_lr``, or
linear ``min_lr`` at epoch 0 then ``base_lr * e / WARMUP_EPOCH`` -- after which
each ``step()`` steps the successor. With ``WARMUP_RECOUNT`` (default) the
successor starts counting at the end of warmup; otherwise its ``last_epoch``
starts at ``WARMUP_EPOCH``.

The wrappers' ``state_dict`` stores the successor's state dict (not the
object), so checkpoints load with ``torch.load(weights_only=True)``.
"""
from torch.optim.lr_scheduler import (CosineAnnealingLR, LRScheduler,
                                      MultiStepLR, StepLR)

from clipwb.errors import ConfigError

__all__ = ["build_lr_scheduler", "ConstantWarmupScheduler",
           "LinearWarmupScheduler", "AVAI_SCHEDS"]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def _warmup_lr(self):
        raise NotImplementedError

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self._warmup_lr()

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        successor = state.pop("successor", None)
        if isinstance(successor, LRScheduler):  # saved by real Dassl
            successor = successor.state_dict()
        if successor is not None:
            self.successor.load_state_dict(successor)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``cons_lr`` during warmup."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr,
                 last_epoch=-1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self):
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch``."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr,
                 last_epoch=-1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self):
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _main_scheduler(optimizer, optim_cfg):
    kind = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    if kind == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise ConfigError("OPTIM.STEPSIZE must be an integer for single_step, "
                              "got {!r}".format(stepsize))
        if stepsize <= 0:
            stepsize = optim_cfg.MAX_EPOCH
        return StepLR(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)
    if kind == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise ConfigError("OPTIM.STEPSIZE must be a list for multi_step, "
                              "got {!r}".format(stepsize))
        return MultiStepLR(optimizer, milestones=list(stepsize),
                           gamma=optim_cfg.GAMMA)
    if kind == "cosine":
        return CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))
    raise ConfigError("OPTIM.LR_SCHEDULER must be one of {}, but got {!r}".format(
        AVAI_SCHEDS, kind))


def build_lr_scheduler(optimizer, optim_cfg):
    """Build ``OPTIM.LR_SCHEDULER``, wrapped in a warmup if ``WARMUP_EPOCH > 0``."""
    scheduler = _main_scheduler(optimizer, optim_cfg)
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup <= 0:
        return scheduler
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = warmup
    if optim_cfg.WARMUP_TYPE == "constant":
        return ConstantWarmupScheduler(optimizer, scheduler, warmup,
                                       optim_cfg.WARMUP_CONS_LR)
    if optim_cfg.WARMUP_TYPE == "linear":
        return LinearWarmupScheduler(optimizer, scheduler, warmup,
                                     optim_cfg.WARMUP_MIN_LR)
    raise ConfigError("OPTIM.WARMUP_TYPE must be 'constant' or 'linear', got "
                      "{!r}".format(optim_cfg.WARMUP_TYPE))
