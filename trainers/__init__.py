"""Trainers (registered in ``engine.TRAINER_REGISTRY`` on import) and their keys.

Every trainer module owns an ``extend_cfg(cfg)`` adding its
``TRAINER.<NAME>.*`` keys; :func:`extend_cfg` calls them all (idempotent).
A new trainer module is added to ``TRAINER_MODULES``.
"""
from . import cocoop, coop, disa, isp, ivlp, maple, promptsrc, zsclip
from . import guidg, guidg_finetune  # noqa: E402  (GuiDG and its DG baselines)

TRAINER_MODULES = [zsclip, coop, cocoop, ivlp, maple, promptsrc, isp, disa]
TRAINER_MODULES += [guidg_finetune, guidg]  # GuiDG


def extend_cfg(cfg):
    """Add every trainer's ``TRAINER.<NAME>.*`` keys with their defaults."""
    for module in TRAINER_MODULES:
        module.extend_cfg(cfg)
    return cfg
