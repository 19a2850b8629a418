"""KgCoOp: CoOp plus a knowledge-guided loss (Yao et al., "Visual-Language
Prompt Tuning with Knowledge-guided Context Optimization", CVPR 2023).

Loss (official ``trainers/kgcoop.py``, ``forward_backward``):

    L = CE(logits, y) + W * L_kg,   L_kg = 1 - mean_i cos(w_i, w_clip_i)

``w_i``: the text features of the learnable prompt of class ``i`` (CoOp's
learner); ``w_clip_i``: the frozen CLIP's features of the dataset's
hand-crafted prompt (:mod:`~clipwb.trainers.kit.handcrafted_text`). Keys are
the official ones, in ``TRAINER.COOP`` (shared with CoOp) plus ``W``.
"""
import torch.nn.functional as F
from torch import nn

from clipwb.engine import compute_accuracy

from clipwb.trainers.coop import CoOp
from clipwb.trainers.kit.config import add_trainer_keys, check_min
from clipwb.trainers.kit.handcrafted_text import (handcrafted_text_features, kgcoop_template,
                                                  knowledge_guided_loss)
from clipwb.trainers.kit.initial_draws import consume_clip_construction, normal_prompt

#: the official code's hard-coded width of its unused modules
UNUSED_WIDTH = 512


def extend_cfg(cfg):
    add_trainer_keys(cfg, "COOP", {
        "W": 1.0,  # weight of the knowledge-guided loss (official default; configs: 8.0)
    })


def consume_unused_draws(clip_model):
    """Advance torch's generator past what KgCoOp's official prompt learner
    and CustomCLIP draw after the context and never train, in their order:
    ``bias_vectors`` (1 x 512, N(0, 0.02) in CLIP's dtype), a second CLIP
    (the one encoding the hand-crafted prompts), ``meta_net`` (Linear
    512 -> 512) and ``adapter`` (Linear 512 -> 128 -> 512, no bias)."""
    normal_prompt(1, UNUSED_WIDTH, clip_model.dtype)
    consume_clip_construction(clip_model)
    nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH)
    nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH // 4, bias=False)
    nn.Linear(UNUSED_WIDTH // 4, UNUSED_WIDTH, bias=False)


class KgCoOp(CoOp):
    """Knowledge-guided Context Optimization (KgCoOp)."""

    cfg_key = "COOP"
    #: torchrun: per-image cross-entropy; L_kg is a mean over the classes,
    #: equal on every rank
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_min(cfg.TRAINER.COOP.W, 0, self.cfg_name("W"))

    def build_clip_model(self, cfg, classnames, clip_model):
        model = super().build_clip_model(cfg, classnames, clip_model)
        # The generator moves on as in the official code (same data order
        # with the same seed); then w_clip, computed once.
        consume_unused_draws(clip_model)
        features = handcrafted_text_features(model.text_encoder, classnames,
                                             kgcoop_template(cfg.DATASET.NAME))
        model.register_buffer("handcrafted_text_features", features, persistent=False)
        return model

    def compute_loss(self, images, labels):
        output = self.model.forward_features(images)
        loss_ce = F.cross_entropy(output.logits, labels)
        loss_kg = knowledge_guided_loss(output.text_features,
                                        self.model.handcrafted_text_features)
        loss = loss_ce + self.method_cfg.W * loss_kg
        return loss, {"loss": loss.item(),
                      "acc": compute_accuracy(output.logits, labels)[0].item()}
