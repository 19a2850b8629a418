"""DiSa: Directional Saliency-Aware prompt learning (Alipour Talemi et al.,
KDD 2025, arXiv 2505.19373), on PromptSRC's scheme.

L_total = L_CE + L_SR + w_CIR L_CIR + lambda L_DiR (losses in
``disa_losses``, masking in ``disa_saliency``; spec ``disa.md``). Every
step runs the frozen image encoder once (CLS feature for L_SR / L_CIR / the
delta form of L_DiR, patch tokens for the saliency), the prompted text
encoder once, and the prompted image encoder on the full image and, for
L_CIR, on the saliency-masked image (``MASK_IMPL gather``: a second pass
on the kept patch tokens; ``batched``: one pass over the full and the masked
images together, the dropped patches masked out of the attention by a key
padding mask). The L_DiR prototypes are computed once per run
(``before_train``; deterministic, so a resumed run recomputes the same
ones). Inference is the prompted model on the full image, as PromptSRC.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from clipwb import runlog
from clipwb.engine import compute_accuracy
from clipwb.errors import ConfigError

from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.disa.losses import (DIR_FORMS, KL_DIRECTIONS, ce_loss, cir_loss, class_prototypes,
                          dir_loss, sr_loss)
from clipwb.trainers.disa.saliency import (MASK_SELECTIONS, SALIENCY_SOURCES, frozen_image_pass,
                            pass_needs, saliency_scores, select_patches, zero_dropped_patches)
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import CLIPOutput
from clipwb.trainers.self_regulating import SelfRegulatingTrainer

MASK_MODES = ("drop_tokens", "zero_pixels")
MASK_IMPLS = ("gather", "batched")
CIR_FROZEN_INPUTS = ("full", "masked")
PROTOTYPE_SOURCES = ("frozen_image", "frozen_text")


@dataclass
class MaskedView:
    """A step's saliency-masked images: ``images`` as the prompted encoder
    takes them (the batch itself for ``drop_tokens``, the dropped patches
    zeroed for ``zero_pixels``), ``keep`` the kept patch indices [B, K]
    (None for ``zero_pixels``), ``features`` their unit-norm prompted
    features once encoded."""

    images: torch.Tensor
    keep: Optional[torch.Tensor]
    features: Optional[torch.Tensor] = None


def extend_cfg(cfg):
    add_trainer_keys(cfg, "DISA", {
        # IVLP prompts and PromptSRC's L_SR / GPA (spec 1, 2.2, 2.6)
        "N_CTX_VISION": 4,
        "N_CTX_TEXT": 4,
        "CTX_INIT": "a photo of a",
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "PROMPT_DEPTH_VISION": 9,
        "PROMPT_DEPTH_TEXT": 9,
        "TEXT_LOSS_WEIGHT": 25,
        "IMAGE_LOSS_WEIGHT": 10,
        "GPA_MEAN": 15,
        "GPA_STD": 1,
        "USE_GPA": True,  # False: evaluate the last epoch's prompts
        # L_CIR and the saliency-aware masking (spec 2.3, 2.4)
        "CIR_LOSS_WEIGHT": 1.0,
        "CIR_KL": "forward",  # forward (as written) | reverse | symmetric
        "CIR_MASKED": True,  # the masked image's prompted feature enters L_CIR
        "CIR_FROZEN_INPUT": "full",  # full | masked: what the frozen f_o of L_CIR sees
        "MASK_RATIO": 0.3,  # fraction of patches dropped
        # cls_attention | value | csa | vv | value_attn | csa_attn | vv_attn | text | random
        # (docs/METHODS.md)
        "SALIENCY": "cls_attention",
        "MASK_SELECTION": "topk",  # topk | sample (drops drawn with p ~ 1 - rank-rescaled s_i)
        "MASK_MODE": "drop_tokens",  # drop_tokens | zero_pixels
        # gather: the masked image's own prompted pass on the kept tokens;
        # batched: full and masked images in one pass (key padding mask)
        "MASK_IMPL": "gather",
        # L_DiR (spec 2.5)
        "DIR_LOSS_WEIGHT": 1.0,  # lambda
        "DIR_FORM": "cosine",  # cosine | delta
        "PROTOTYPE": "frozen_image",  # frozen_image | frozen_text
    })


class DiSa(SelfRegulatingTrainer):
    """Directional Saliency-Aware prompt learning (see the module docstring)."""

    #: DiSa has no official code; its own losses (L_CIR, L_DiR) take float32
    #: features, so PREC fp16 keeps PromptSRC's float16 parameters but not
    #: PromptSRC's float16 features
    official_half_features = False

    cfg_key = "DISA"
    #: torchrun: every loss term is a mean over the images, the prototypes come
    #: from one frozen pass over all training images that every rank makes
    #: alike, and GPA averages weights that are equal on every rank
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.DISA
        for key, choices in (("CIR_KL", KL_DIRECTIONS), ("CIR_FROZEN_INPUT", CIR_FROZEN_INPUTS),
                             ("SALIENCY", SALIENCY_SOURCES), ("MASK_SELECTION", MASK_SELECTIONS),
                             ("MASK_MODE", MASK_MODES), ("DIR_FORM", DIR_FORMS),
                             ("PROTOTYPE", PROTOTYPE_SOURCES), ("MASK_IMPL", MASK_IMPLS)):
            check_choice(node[key], choices, "TRAINER.DISA." + key)
        for key in ("CIR_LOSS_WEIGHT", "DIR_LOSS_WEIGHT", "TEXT_LOSS_WEIGHT",
                    "IMAGE_LOSS_WEIGHT"):
            check_min(node[key], 0, "TRAINER.DISA." + key)
        ratio = node.MASK_RATIO
        if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise ConfigError("TRAINER.DISA.MASK_RATIO = {!r} must be a fraction in [0, 1) "
                              "(the share of patches dropped, e.g. 0.3).".format(ratio))

    def requires_vit(self, cfg):
        return True  # the saliency is computed over ViT patch tokens

    def build_model(self):
        super().build_model()
        self._prototypes = None

    # -- saliency-aware masking (spec 2.4) ------------------------------------
    @property
    def patch_size(self):
        return self.model.image_encoder.visual.conv1.kernel_size[0]

    def frozen_pass(self, images, keep_index=None, for_saliency=True):
        """The step's frozen image forward (CLS feature + patch tokens, and the
        last block's attention when the saliency source needs it)."""
        needs = pass_needs(self.method_cfg.SALIENCY if for_saliency else None)
        return frozen_image_pass(self.model.image_encoder, images, keep_index, *needs)

    @torch.no_grad()
    def patch_saliency(self, frozen, labels):
        """Per-patch saliency [B, P] from the frozen pass (TRAINER.DISA.SALIENCY)."""
        return saliency_scores(self.method_cfg.SALIENCY, self.model.image_encoder, frozen,
                               self.model.zero_shot.text_features, labels)

    def keep_index(self, saliency):
        """Indices [B, K] of the kept patches (MASK_RATIO, MASK_SELECTION)."""
        node = self.method_cfg
        return select_patches(saliency, node.MASK_RATIO, node.MASK_SELECTION)

    def masked_input(self, images, keep_index):
        """``(images, keep_index)`` for the encoder, per TRAINER.DISA.MASK_MODE."""
        if self.method_cfg.MASK_MODE == "drop_tokens":
            return images, keep_index
        return zero_dropped_patches(images, keep_index, self.patch_size), None

    def masked_view(self, images, labels, frozen):
        """The :class:`MaskedView` of the batch from the step's frozen pass."""
        keep = self.keep_index(self.patch_saliency(frozen, labels))
        return MaskedView(*self.masked_input(images, keep))

    @property
    def batched_masked_pass(self):
        """Whether the masked images ride in the full images' prompted pass
        (MASK_IMPL batched, and L_CIR uses a masked image)."""
        node = self.method_cfg
        return node.MASK_IMPL == "batched" and node.CIR_MASKED and node.CIR_LOSS_WEIGHT > 0

    def encode_full_and_masked(self, images, masked, prompts):
        """MASK_IMPL batched: one prompted pass over ``[images; masked
        images]`` (2B). With ``drop_tokens`` every patch token stays in the
        sequence and the dropped ones of the second half are masked out of
        each block's attention as keys, which gives the gathered pass's CLS
        feature. Returns the unit-norm features of the full and the masked
        images, [B, D] each."""
        dropped = None
        if masked.keep is not None:
            batch, n_patches = images.shape[0], self.model.image_encoder.num_patches
            dropped = torch.ones(batch, n_patches, dtype=torch.bool, device=masked.keep.device)
            dropped = dropped.scatter(1, masked.keep.long(), False)
            dropped = torch.cat([torch.zeros_like(dropped), dropped])
        features = self.model.encode_images(torch.cat([images, masked.images]), prompts.vision,
                                            prompts.vision_deep, masked_patches=dropped)
        return features.split(images.shape[0])

    # -- L_DiR prototypes (spec 2.5) ------------------------------------------
    def before_train(self):
        super().before_train()
        with runlog.setup_output():
            self.class_prototypes()

    def class_prototypes(self):
        """The prototypes [C, D], computed on first use and kept for the run."""
        if self._prototypes is None:
            self._prototypes = self.compute_prototypes()
        return self._prototypes

    @torch.no_grad()
    def compute_prototypes(self):
        """Normalised class means of the normalised frozen image features of
        the (few-shot) training images under the test transform, or the
        frozen text features (TRAINER.DISA.PROTOTYPE frozen_text)."""
        teacher = self.model.zero_shot
        if self.method_cfg.PROTOTYPE == "frozen_text":
            return teacher.text_features
        features, labels = self.frozen_train_features(teacher.image_encoder)
        n_cls = teacher.text_features.shape[0]
        prototypes = class_prototypes(features, labels, n_cls, self.dm.dataset.classnames)
        print("DiSa: L_DiR prototypes of {} classes from the frozen image features of {} "
              "training images".format(n_cls, len(labels)))
        return prototypes

    # -- the step ---------------------------------------------------------------
    def compute_loss(self, images, labels):
        node = self.method_cfg
        model, teacher = self.model, self.model.zero_shot
        frozen = self.frozen_pass(images)
        prompts = model.prompt_learner()
        text_features = model.encode_prompts(prompts)
        masked = None
        if self.batched_masked_pass:
            masked = self.masked_view(images, labels, frozen)
            image_features, masked.features = self.encode_full_and_masked(images, masked,
                                                                          prompts)
        else:
            image_features = model.encode_images(images, prompts.vision, prompts.vision_deep)
        scale = model.logit_scale.exp().detach().float()
        logits = scale * image_features @ text_features.t()
        output = CLIPOutput(logits, image_features, text_features)

        loss_ce = ce_loss(logits, labels)
        frozen_logits = teacher.logits_from_features(frozen.features)
        sr = sr_loss(output, frozen.features, teacher.text_features, frozen_logits,
                     node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT)
        loss = loss_ce + sr.total
        summary = {"loss_ce": loss_ce.item(), "loss_scl_text": sr.text.item(),
                   "loss_scl_image": sr.image.item(), "loss_scl_logits": sr.logits.item()}

        if node.CIR_LOSS_WEIGHT > 0:
            loss_cir = self.cir_term(images, labels, frozen, prompts, image_features,
                                     text_features, scale, masked)
            loss = loss + node.CIR_LOSS_WEIGHT * loss_cir
            summary["loss_cir"] = loss_cir.item()
        if node.DIR_LOSS_WEIGHT > 0:
            loss_dir = dir_loss(image_features, self.class_prototypes(), labels,
                                node.DIR_FORM, frozen.features)
            loss = loss + node.DIR_LOSS_WEIGHT * loss_dir
            summary["loss_dir"] = loss_dir.item()
        summary = dict(loss=loss.item(), acc=compute_accuracy(logits, labels)[0].item(),
                       **summary)
        return loss, summary

    def cir_term(self, images, labels, frozen, prompts, image_features, text_features, scale,
                 masked=None):
        """L_CIR between tau f_p^m g_o^T and tau f_o g_p^T (spec 2.3);
        ``masked``: the :class:`MaskedView` already encoded by the batched
        pass (None: masked and encoded here, MASK_IMPL gather)."""
        node = self.method_cfg
        frozen_features = frozen.features
        masked_features = image_features
        if node.CIR_MASKED:
            if masked is None:
                masked = self.masked_view(images, labels, frozen)
                masked.features = self.model.encode_images(masked.images, prompts.vision,
                                                           prompts.vision_deep, masked.keep)
            masked_features = masked.features
            if node.CIR_FROZEN_INPUT == "masked":
                # no prompts and no gradient: its own (gathered) pass under both impls
                frozen_features = self.frozen_pass(masked.images, masked.keep, False).features
        masked_logits = self.model.zero_shot.logits_from_features(masked_features)
        frozen_image_logits = scale * frozen_features @ text_features.t()
        return cir_loss(masked_logits, frozen_image_logits, node.CIR_KL)

    def after_epoch(self):
        if self.method_cfg.USE_GPA:
            super().after_epoch()
        else:
            ClipPromptTrainer.after_epoch(self)
