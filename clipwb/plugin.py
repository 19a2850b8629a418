"""The Dassl plugin: import it to get DiSa, ISP and GuiDG in a Dassl checkout.

In a CoOp / MaPLe / PromptSRC checkout's ``train.py`` (``python -m
clipwb.dropin`` writes these two lines)::

    import clipwb.plugin          # after the checkout's own trainers and datasets
    ...
    extend_cfg(cfg)
    clipwb.plugin.extend_cfg(cfg)

Importing this module registers, into whichever Dassl is in use (real Dassl
in a checkout; the built-in engine elsewhere), the trainers DiSa, ISP,
GuiDGExpert, GuiDG, CLIPood, ERMWiSEFT, UEOWiSEFT, the baselines KgCoOp, TCP
and ProGrad, and every dataset reader of the project that the registry lacks
(ToyShapes, ToyShapesDG, the DomainBed readers, ...). A name the checkout
already registered (its own KgCoOp, say) stays the checkout's, and one line
says which were registered and which kept; only GuiDG's DomainBed readers replace Dassl's own
readers of the same names (see :func:`register`). ``REPORT`` holds what was
done.

Inside a checkout, a UserInputError (bad input, a bad setting such as
``DASSL_BACKEND``) ends the run as one sentence on stderr with exit status 2,
as in this project's ``train.py`` (:func:`clipwb.error_exit.exit_on_user_errors`,
installed before anything else here).
"""
from clipwb.error_exit import exit_on_user_errors

exit_on_user_errors()

from clipwb import registration  # noqa: E402 - after the hook: the engine's import checks DASSL_BACKEND
from clipwb.engine import CfgNode  # noqa: E402

__all__ = ["REPORT", "extend_cfg", "register"]


def register():
    """Register the plugin's trainers and the missing datasets; print one line.

    GuiDG's DomainBed readers (PACS, VLCS, OfficeHome, TerraIncognita,
    DomainNet) also replace readers of those names that come from the Dassl
    library itself (another layout and domain spelling, no GuiDG pools; no
    CoOp-family trainer reads them), never a reader of the checkout's own.
    """
    from clipwb.datasets import DG_DATASET_NAMES

    names = list(registration.PLUGIN_TRAINERS) + list(registration.PLUGIN_BASELINES)
    trainers, datasets = registration.register(names, replace=DG_DATASET_NAMES)
    if trainers.registered or trainers.kept or datasets.registered or datasets.kept:
        print(registration.summary(trainers, datasets))
    return trainers, datasets


def project_keys():
    """A config holding only the project's keys: ``TRAINER.<NAME>``,
    ``DATASET``, ``OPTIM`` and the top-level nodes of its trainers (ProGrad's
    ``LOSS``)."""
    import clipwb.datasets
    import clipwb.trainers

    ours = CfgNode()
    ours.TRAINER = CfgNode()
    ours.DATASET = CfgNode()
    ours.OPTIM = CfgNode()
    clipwb.datasets.extend_cfg(ours)
    clipwb.trainers.extend_cfg(ours)
    return ours


def baseline_nodes():
    """The ``TRAINER`` nodes the plugin's baselines read (``COOP``: a CoOp
    checkout's node, to which KgCoOp adds ``W``)."""
    classes = registration.trainer_classes(registration.PLUGIN_BASELINES)
    return {cls.cfg_key for cls in classes.values()}


def _add_missing(node, ours):
    for key, value in ours.items():
        if key not in node:
            node[key] = value


def extend_cfg(cfg):
    """Add the project's config keys that ``cfg`` lacks (idempotent); no value
    already in ``cfg`` changes.

    A ``TRAINER.<NAME>`` node is added whole where ``cfg`` has none. A node
    the host defined is left exactly as it is (``TRAINER.IVLP``, ...), except
    the nodes the baselines read (:func:`baseline_nodes`: the host's
    ``TRAINER.COOP``), which get only the keys they lack (KgCoOp's ``W``).
    A missing top-level node (ProGrad's ``LOSS``) or value (MMRL's ``TASK``)
    is added whole; ``DATASET``, ``OPTIM`` and a top-level node the host has
    get only the keys they lack (a host's top-level value stays).
    """
    ours = project_keys()
    shared = baseline_nodes()
    for name, node in ours.TRAINER.items():
        if name not in cfg.TRAINER:
            cfg.TRAINER[name] = node
        elif name in shared:
            _add_missing(cfg.TRAINER[name], node)
    for section, node in ours.items():
        if section == "TRAINER":
            continue
        if section not in cfg:
            cfg[section] = node
        elif isinstance(node, CfgNode) and isinstance(cfg[section], CfgNode):
            _add_missing(cfg[section], node)  # a host's value (MMRL's TASK) stays
    return cfg


REPORT = register()
