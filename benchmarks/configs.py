"""Which shipped config each benchmarked trainer is built with.

Base-to-novel configs (the ``base2new.sh`` defaults) for the prompt
trainers, plus named variants (``ISP-lite``: ISP without its per-step frozen
image pass; ``DiSa-batched``: DiSa with the masked pass batched with the
unmasked one, ``TRAINER.DISA.MASK_IMPL batched``); the DG fine-tuning
trainers and GuiDG share the ERM + WiSE-FT file so that GuiDG is compared
with plain fine-tuning of the same encoder under the same batch and
optimizer.
"""
import os

import clipwb.datasets
import clipwb.trainers
from clipwb import registration
from clipwb.engine import TRAINER_REGISTRY, get_cfg_default
from clipwb.errors import ConfigError

# every trainer and dataset, as train.py registers them (the command line
# has no test fixture doing it; names already registered are kept)
registration.register_all()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs", "trainers")

TRAINER_CONFIGS = {
    "ZeroshotCLIP": "CoOp/vit_b16.yaml",
    "ZeroshotCLIP2": "CoOp/vit_b16.yaml",
    "CoOp": "CoOp/vit_b16_ctxv1.yaml",
    "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1.yaml",
    "TCP": "TCP/vit_b16_ep100_ctxv1.yaml",
    "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
    "IVLP": "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "ProGrad": "ProGrad/rn50_ep100.yaml",  # the official base-to-new config (RN50 only)
    "MMRL": "MMRL/vit_b16.yaml",
    "MultiModalAdapter": "MultiModalAdapter/vit_b16_ep5.yaml",
    "ExtrasLinearProbeCoOp": "ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml",
    "ExtrasLinearProbeCoCoOp": "ExtrasLinearProbeCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
    "ExtrasLinearProbeKgCoOp": "ExtrasLinearProbeKgCoOp/vit_b16_ep10_ctxv1_bs4_lr35.yaml",
    "ExtrasLinearProbeMaPLe": "ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx.yaml",
    "ExtrasLinearProbePromptSRC": "ExtrasLinearProbePromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "DiSa": "DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "ISP": "ISP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
    "CLIPood": "GuiDG/vit_b16_clipood.yaml",
    "ERMWiSEFT": "GuiDG/vit_b16_erm_wf.yaml",
    "UEOWiSEFT": "GuiDG/vit_b16_ueo_wf.yaml",
    "GuiDG": "GuiDG/vit_b16_erm_wf.yaml",
    # variants: another config of a registered trainer (NAME-variant)
    "ISP-lite": "ISP/vit_b16_c2_ep5_batch4_2+2ctx_lite.yaml",
    "DiSa-batched": "DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}
#: variants that are a shipped config plus switches (KEY VALUE, before --opts)
VARIANT_OPTS = {"DiSa-batched": ("TRAINER.DISA.MASK_IMPL", "batched")}

#: the default benchmark list (every baseline a ratio or target needs)
DEFAULT_TRAINERS = ("ZeroshotCLIP", "CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DiSa",
                    "ISP", "ERMWiSEFT", "GuiDG")
#: trainers that fine-tune the image encoder on per-domain batches
DG_TRAINERS = ("CLIPood", "ERMWiSEFT", "UEOWiSEFT", "GuiDG")


def check_trainer_names(names):
    unknown = [n for n in names if n not in TRAINER_CONFIGS]
    if unknown:
        raise ConfigError("--trainers: unknown {}; choose from {}.".format(
            ", ".join(unknown), ", ".join(TRAINER_CONFIGS)))
    return list(names)


def registered_name(name):
    """The trainer a benchmark name builds (``ISP-lite`` -> ``ISP``,
    ``DiSa-batched`` -> ``DiSa``)."""
    return name.split("-", 1)[0]


def config_path(name):
    return os.path.join(CONFIG_DIR, TRAINER_CONFIGS[name])


def config_from_file(path, trainer, opts=()):
    """Defaults + every trainer's and dataset's keys (as ``train.py`` adds
    them) + the YAML ``path`` + ``TRAINER.NAME trainer`` + ``opts`` (a KEY
    VALUE list), frozen."""
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)
    cfg.merge_from_file(path)
    cfg.TRAINER.NAME = trainer
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def trainer_cfg(name, opts):
    """Defaults + the trainer's shipped YAML + the variant's switches
    (:data:`VARIANT_OPTS`) + ``opts`` (a KEY VALUE list), frozen."""
    return config_from_file(config_path(name), registered_name(name),
                            list(VARIANT_OPTS.get(name, ())) + list(opts))


def precision_key(name):
    """``TRAINER.<KEY>`` node holding this trainer's PREC (None: zero-shot)."""
    return getattr(TRAINER_REGISTRY.get(registered_name(name)), "cfg_key", None)
