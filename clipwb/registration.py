"""Registering the project's trainers and datasets into a Dassl registry.

Defining a class registers nothing; :func:`register` does, once per name:

- a name already in the registry stays as it is (a host checkout's CoOp,
  IVLP, MaPLe, PromptSRC and its dataset readers keep theirs), unless it is
  in ``replace`` and held by a reader of the Dassl library itself: GuiDG's
  DomainBed readers replace Dassl's PACS / VLCS / OfficeHome / DomainNet
  readers, which have another layout, other domain names and no GuiDG pools;
- so no "already registered" error can happen and nothing of a host's is
  overwritten.

:mod:`clipwb.plugin` (what a host imports) calls it for the plugin's trainers,
the baselines of :data:`PLUGIN_BASELINES` and every dataset; this
repository's ``train.py`` for everything.
"""
import collections
import sys

from clipwb.engine import BACKEND, DATASET_REGISTRY, TRAINER_REGISTRY
from clipwb.errors import UserInputError

#: trainer name -> module under clipwb.trainers
BASELINE_TRAINERS = collections.OrderedDict([
    ("ZeroshotCLIP", "zsclip"), ("ZeroshotCLIP2", "zsclip"), ("CoOp", "coop"),
    ("KgCoOp", "kgcoop"), ("TCP", "tcp"), ("CoCoOp", "cocoop"), ("IVLP", "ivlp"),
    ("MaPLe", "maple"),
    ("PromptSRC", "promptsrc"), ("ProGrad", "prograd"), ("MMRL", "mmrl"),
    ("ExtrasLinearProbeCoOp", "dept"), ("ExtrasLinearProbeCoCoOp", "dept"),
    ("ExtrasLinearProbeKgCoOp", "dept"), ("ExtrasLinearProbeMaPLe", "dept"),
    ("ExtrasLinearProbePromptSRC", "dept"),
    ("MultiModalAdapter", "mma"), ("MMA", "mma"),
])
#: the trainers a host checkout gets from the plugin
PLUGIN_TRAINERS = collections.OrderedDict([
    ("DiSa", "disa.trainer"), ("ISP", "isp.trainer"), ("GuiDGExpert", "guidg.trainer"),
    ("GuiDG", "guidg.trainer"), ("CLIPood", "guidg.finetune"),
    ("ERMWiSEFT", "guidg.finetune"), ("UEOWiSEFT", "guidg.finetune"),
])

#: the baselines a host checkout gets from the plugin where it lacks them (a
#: CoOp / MaPLe / PromptSRC checkout has none of them): their keys are in the
#: host's ``TRAINER.COOP`` node (see :func:`clipwb.plugin.extend_cfg`), DePT's
#: in its own nodes (``TRAINER.LINEAR_PROBE``, ``FILM``) and the base method's,
#: MMRL's in ``TRAINER.MMRL`` and the top-level ``TASK``
PLUGIN_BASELINES = ("KgCoOp", "TCP", "ProGrad", "MMRL", "ExtrasLinearProbeCoOp",
                    "ExtrasLinearProbeCoCoOp", "ExtrasLinearProbeKgCoOp",
                    "ExtrasLinearProbeMaPLe", "ExtrasLinearProbePromptSRC", "MultiModalAdapter")

Report = collections.namedtuple("Report", "registered kept replaced")


def trainer_classes(names):
    """``{name: class}`` for trainer ``names`` (keys of the tables above)."""
    from clipwb.trainers import trainer_module

    table = dict(BASELINE_TRAINERS, **PLUGIN_TRAINERS)
    return collections.OrderedDict((n, getattr(trainer_module(table[n]), n)) for n in names)


def _registered(registry):
    return dict(registry._obj_map)


def _from_dassl_library(obj):
    module = getattr(obj, "__module__", "") or ""
    return module == "dassl" or module.startswith("dassl.")


def register_objects(registry, objects, replace=()):
    """Register ``objects`` (name -> class) in ``registry``; return a Report."""
    present = _registered(registry)
    registered, kept, replaced = [], [], []
    for name, obj in objects.items():
        held = present.get(name)
        if held is obj:
            continue  # registered by an earlier call
        if held is None:
            registry.register(obj)
            registered.append(name)
        elif name in replace and _from_dassl_library(held):
            registry.register(obj, force=True)
            replaced.append(name)
        else:
            kept.append(name)
    return Report(registered, kept, replaced)


def check_backend():
    """Refuse the built-in engine in a process that builds trainers with real Dassl.

    A host checkout's ``train.py`` builds trainers with real Dassl's
    ``build_trainer``; with ``DASSL_BACKEND=builtin`` the plugin would fill
    the built-in engine's registry, which that ``build_trainer`` never sees.
    """
    engine = sys.modules.get("dassl.engine")
    registry = getattr(engine, "TRAINER_REGISTRY", None)
    if BACKEND == "builtin" and registry is not None and registry is not TRAINER_REGISTRY:
        raise UserInputError(
            "DASSL_BACKEND=builtin, but this process builds its trainers with real Dassl "
            "({}): its build_trainer cannot see the plugin's trainers. Unset DASSL_BACKEND "
            "(or set it to auto or dassl) inside a Dassl checkout.".format(
                getattr(engine, "__file__", "dassl.engine")))


def register(trainers, datasets=None, replace=()):
    """Register trainers ``trainers`` (names) and every dataset reader (or those
    in ``datasets``); return ``(trainer Report, dataset Report)``."""
    from clipwb.datasets import dataset_classes

    check_backend()
    classes = dataset_classes()
    if datasets is not None:
        classes = collections.OrderedDict((n, classes[n]) for n in datasets)
    return (register_objects(TRAINER_REGISTRY, trainer_classes(trainers), replace),
            register_objects(DATASET_REGISTRY, classes, replace))


def summary(trainer_report, dataset_report):
    """One line saying what was registered, which names were left as they were
    and which of Dassl's own readers were replaced."""
    parts = []
    names = trainer_report.registered + dataset_report.registered
    if names:
        parts.append("registered " + ", ".join(names))
    kept = trainer_report.kept + dataset_report.kept
    if kept:
        parts.append("kept the ones already registered: " + ", ".join(kept))
    replaced = trainer_report.replaced + dataset_report.replaced
    if replaced:
        parts.append("GuiDG's DomainBed readers replace Dassl's own " + ", ".join(replaced))
    return "clipwb plugin ({} Dassl): {}".format(
        "real" if BACKEND == "dassl" else "built-in", "; ".join(parts) or "nothing new")


def register_all():
    """Register every trainer and dataset of the project, as this repository's
    ``train.py`` does (it is its own host: GuiDG's DomainBed readers replace
    real Dassl's readers of the same names, whose layout has no GuiDG pools)."""
    from clipwb.datasets import DG_DATASET_NAMES

    return register(list(BASELINE_TRAINERS) + list(PLUGIN_TRAINERS), replace=DG_DATASET_NAMES)
