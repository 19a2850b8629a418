"""GuiDG: "Generalizing Vision-Language Models with Dedicated Prompt Guidance"
(AAAI 2026), two steps.

1. ``GuiDGExpert``: one CoOp text prompt per source domain (keys
   ``TRAINER.COOP.*``: 16 generic context vectors, class token at the end),
   trained on the domain's pool A (``DATASET.DG_TRAIN_POOL A``), kept at its best
   accuracy on pool B (``TEST.FINAL_MODEL best_val``): ``prompt_learner/
   model-best.pth.tar`` of the run folder.
2. ``GuiDG``: full fine-tuning of the image encoder on pool B of every source
   domain with the baseline's loss applied with every expert's classifier and
   weighted by CMAttn (appendix Eq. 19-20), plus the baseline's averaging
   (``BASELINE`` clipood: MMS + BMA; erm / ueo: WiSE-FT). On the target the
   experts' logits are mixed with the CMAttn weights.

``TRAINER.GUIDG.EXPERT_DIR`` is the run folder of the experts with ``{domain}``
where the domain name goes, e.g. ``output/dg/pacs/shots_16/GuiDGExpert/
vit_b16_c16_ep31/expert_{domain}/seed1``.
"""
import os
import re

import numpy as np
import torch

from clipwb.engine import distributed, load_checkpoint
from clipwb.errors import ConfigError, MissingFileError, UserInputError

from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.coop import CoOp
from clipwb.trainers.guidg.cmattn import CMAttn
from clipwb.trainers.guidg.finetune import DGFinetuneTrainer, add_finetune_keys, check_baseline, check_weighting
from clipwb.trainers.guidg.full_data import (full_data_transforms, rebuilt_loader,
                                             set_full_data_transforms)
from clipwb.trainers.kit.prompt_learners import PromptLearner
from clipwb.trainers.kit.prompted_clip import PromptedCLIP

EXPERT_MODEL = "prompt_learner"


def extend_cfg(cfg):
    add_finetune_keys(cfg, "GUIDG", BASELINE="clipood", BMA_BETA=0.1, EXPERT_DIR="",
                      N_HEAD=4, WEIGHTING="batch")
    add_trainer_keys(cfg, "GUIDGEXPERT", {
        "VAL_EVERY": 1,     # validate on pool B when epoch (0-based) % VAL_EVERY == 0
        "DROP_LAST": True,  # Dassl's train loader; False keeps the last incomplete batch
    })
    # The DG datasets read which pool a run trains on (A: experts, B: step 2).
    if "DG_TRAIN_POOL" not in cfg.DATASET:
        cfg.DATASET.DG_TRAIN_POOL = "B"


class GuiDGExpert(CoOp):
    """Step 1: a CoOp prompt trained on one source domain's pool A."""

    #: torchrun: CoOp's per-image cross-entropy; the kept last batch
    #: (DROP_LAST False) must split evenly too (build_data_loader)
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if len(cfg.DATASET.SOURCE_DOMAINS) != 1:
            raise ConfigError(
                "GuiDGExpert trains one expert per domain: DATASET.SOURCE_DOMAINS = {} must "
                "name exactly one domain (e.g. --source-domains photo --target-domains "
                "photo).".format(list(cfg.DATASET.SOURCE_DOMAINS)))
        if cfg.DATASET.get("DG_TRAIN_POOL", "B") != "A":
            raise ConfigError("GuiDGExpert trains on pool A: set DATASET.DG_TRAIN_POOL A "
                              "(pool B is for step 2).")
        if "GUIDGEXPERT" not in cfg.TRAINER:
            raise ConfigError("TRAINER.GUIDGEXPERT is missing: call clipwb.plugin.extend_cfg(cfg) "
                              "before merging config files.")
        check_min(cfg.TRAINER.GUIDGEXPERT.VAL_EVERY, 1, "TRAINER.GUIDGEXPERT.VAL_EVERY")
        check_choice(cfg.TRAINER.GUIDGEXPERT.DROP_LAST, (True, False),
                     "TRAINER.GUIDGEXPERT.DROP_LAST")

    def build_data_loader(self):
        super().build_data_loader()
        if not self.cfg.TRAINER.GUIDGEXPERT.DROP_LAST:
            self.train_loader_x = self.dm.train_loader_x = rebuilt_loader(self.dm.train_loader_x)
            print("Training batches: {} an epoch, the last incomplete one kept "
                  "(TRAINER.GUIDGEXPERT.DROP_LAST False)".format(len(self.train_loader_x)))
            if distributed.is_distributed():  # each rank keeps its slice of every batch
                check_last_batch(len(self.train_loader_x.dataset),
                                 self.train_loader_x.batch_size)
                self.train_loader_x = distributed.RankSlices(self.train_loader_x)
        transforms = full_data_transforms(self.cfg, self.dm.dataset)
        if transforms is not None:
            set_full_data_transforms(self, transforms)

    def is_validation_epoch(self):
        """Whether pool B is evaluated after this epoch (``VAL_EVERY``; the
        official code: epochs 0, 5, ..., 30)."""
        return self.epoch % self.cfg.TRAINER.GUIDGEXPERT.VAL_EVERY == 0

    def after_epoch(self):
        self._skip_validation = not self.is_validation_epoch()
        try:
            super().after_epoch()
        finally:
            self._skip_validation = False

    def test(self, split=None):
        if split == "val" and self.__dict__.get("_skip_validation"):
            return -np.inf  # not a validation epoch: no result, so no new best
        return super().test(split)


def check_last_batch(n_images, batch_size, world=None):
    """One sentence when the last incomplete batch of ``n_images`` in batches
    of ``batch_size`` does not split evenly over the ranks (unequal slices
    would weigh its images unequally)."""
    world = distributed.world_size() if world is None else world
    last = n_images % batch_size
    if last % world:
        raise ConfigError(
            "TRAINER.GUIDGEXPERT.DROP_LAST False keeps a last batch of {} images ({} training "
            "images in batches of {}), which does not split evenly over the {} processes: set "
            "TRAINER.GUIDGEXPERT.DROP_LAST True, or use a --nproc_per_node that divides "
            "{}.".format(last, n_images, batch_size, world, last))


def find_expert_checkpoint(run_dir):
    """``run_dir/prompt_learner/model-best.pth.tar``, else its last epoch file."""
    folder = os.path.join(run_dir, EXPERT_MODEL)
    best = os.path.join(folder, "model-best.pth.tar")
    if os.path.isfile(best):
        return best
    epochs = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = re.fullmatch(r"model\.pth\.tar-(\d+)", name)
            if match:
                epochs.append((int(match.group(1)), name))
    if epochs:
        return os.path.join(folder, max(epochs)[1])
    return None


@torch.no_grad()
def expert_text_features(clip_model, classnames, checkpoint_path):
    """Unit-norm class text features [C, D] of a saved CoOp expert prompt."""
    state = load_checkpoint(checkpoint_path)["state_dict"]
    if "ctx" not in state:
        raise UserInputError("{} holds no prompt context 'ctx': it is not a GuiDGExpert / "
                             "CoOp checkpoint.".format(checkpoint_path))
    ctx = state["ctx"].float()
    learner = PromptLearner(clip_model, classnames, n_ctx=ctx.shape[-2],
                            csc=ctx.dim() == 3).to(ctx.device)
    if learner.ctx.shape != ctx.shape:
        raise UserInputError("{}: its context {} does not fit {} classes; train the expert "
                             "on this dataset.".format(checkpoint_path, tuple(ctx.shape),
                                                       len(classnames)))
    learner.ctx.copy_(ctx.to(learner.ctx.device))
    device = clip_model.ln_final.weight.device
    learner.to(device)
    return PromptedCLIP(clip_model, learner).encode_prompts(learner())


class GuiDG(DGFinetuneTrainer):
    """Step 2: CMAttn-guided fine-tuning of the image encoder."""

    cfg_key = "GUIDG"
    #: torchrun: per-image losses; CMAttn's batch-mean weights and UEO's mean
    #: prediction are the global batch's (DGFinetuneTrainer.compute_loss)
    torchrun_ready = True

    def get_baseline(self):
        return self.method_cfg.BASELINE

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.GUIDG
        check_baseline(node.BASELINE, self.key("BASELINE"))
        check_weighting(node.WEIGHTING, self.key("WEIGHTING"))
        check_min(node.N_HEAD, 1, self.key("N_HEAD"))
        if not node.EXPERT_DIR:
            raise ConfigError(
                "{} is empty: give the run folder of the step-1 experts with {{domain}} "
                "for the domain name (scripts/guidg/dg.sh sets it).".format(
                    self.key("EXPERT_DIR")))
        if len(cfg.DATASET.SOURCE_DOMAINS) > 1 and "{domain}" not in node.EXPERT_DIR:
            raise ConfigError("{} = {!r} needs {{domain}}: there is one expert per source "
                              "domain.".format(self.key("EXPERT_DIR"), node.EXPERT_DIR))

    def expert_dirs(self):
        template = self.method_cfg.EXPERT_DIR
        return [(d, template.replace("{domain}", d)) for d in self.cfg.DATASET.SOURCE_DOMAINS]

    def build_classifiers(self, clip_model, classnames):
        features = []
        for domain, run_dir in self.expert_dirs():
            path = find_expert_checkpoint(run_dir)
            if path is None:
                raise MissingFileError(
                    "No expert prompt for source domain {!r}: expected {} (from {} = {!r}). "
                    "Train it first (step 1: --trainer GuiDGExpert --source-domains {} "
                    "DATASET.DG_TRAIN_POOL A, or bash scripts/guidg/dg.sh).".format(
                        domain, os.path.join(run_dir, EXPERT_MODEL, "model-best.pth.tar"),
                        self.key("EXPERT_DIR"), self.method_cfg.EXPERT_DIR, domain))
            print("Expert of {}: {}".format(domain, path))
            features.append(expert_text_features(clip_model, classnames, path))
        return torch.stack(features)

    def build_weighter(self, feature_dim, num_classes):
        attn = CMAttn(feature_dim, num_classes, self.method_cfg.N_HEAD)
        print("CMAttn: {} heads, {:,} parameters".format(
            attn.num_heads, sum(p.numel() for p in attn.parameters())))
        return attn
