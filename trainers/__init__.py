"""The trainers of the project, installed as the package ``clipwb.trainers``.

This folder is the CoOp-family face of the code (``trainers/<method>``), but
it is imported only as ``clipwb.trainers`` (``pip install -e .`` maps it; see
docs/ARCHITECTURE.md), so it never collides with a host checkout's own
``trainers`` package. Importing it registers nothing:
:mod:`clipwb.plugin` registers the trainers.

- ``kit/``: the prompted-CLIP kit every method imports (CLIP loader, prompted
  encoders, prompt learners, precision, templates, frozen CLIP, the trainer
  base ``ClipPromptTrainer``, the PromptSRC-family losses);
- ``zsclip.py coop.py kgcoop.py tcp.py prograd.py cocoop.py ivlp.py maple.py promptsrc.py
  mma.py mmrl.py``: the baselines (``self_regulating.py``: the PromptSRC / DiSa base on IVLP);
- ``disa/ isp/ guidg/``: the three methods, each with its trainer, losses and
  modules.
"""
if __name__ != "clipwb.trainers":
    raise ImportError(
        "This 'trainers' folder is the package clipwb.trainers: import clipwb.trainers "
        "(after 'pip install -e .'), not {!r}.".format(__name__))

import importlib

#: Every trainer module, in the order their config keys are added.
TRAINER_MODULES = (
    "zsclip", "coop", "kgcoop", "tcp", "cocoop", "ivlp", "maple", "promptsrc", "prograd",
    "dept",
    "mmrl",
    "mma",
    "isp.trainer",
    "disa.trainer",
    "guidg.finetune", "guidg.trainer",
)


def trainer_module(name):
    """The module ``clipwb.trainers.<name>``."""
    return importlib.import_module("clipwb.trainers." + name)


def extend_cfg(cfg):
    """Add every trainer's ``TRAINER.<NAME>.*`` keys with their defaults, and
    the ``OPTIM`` keys of the trainers' own schedules (``kit/lr_schedule.py``)
    (idempotent: keys already there keep their value)."""
    trainer_module("kit.lr_schedule").extend_cfg(cfg)
    for name in TRAINER_MODULES:
        trainer_module(name).extend_cfg(cfg)
    return cfg
