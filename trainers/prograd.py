"""ProGrad: CoOp updated with prompt-aligned gradients (Zhu et al.,
"Prompt-aligned Gradient for Prompt Tuning", ICCV 2023).

CoOp's context (``TRAINER.COOP`` keys, shared with CoOp) is trained with two
losses on the same batch (official ``trainers/prograd.py``, ``ProGradLoss``):

    L_ce = CE(z, y)
    L_kl = T^2 * mean_i sum_c -softmax(z0_i / T)_c * log_softmax(z_i / T)_c

``z``: the prompted model's logits; ``z0``: zero-shot CLIP's logits (a
float32 CLIP whatever ``PREC`` is; its text features from ProGrad's
hand-written template of the dataset, ``PROGRAD_TEMPLATES``). ``L_kl`` is
the KL divergence KL(p0 || p) up to the constant entropy of ``p0`` (the
official code drops it; same gradient). Only ``L_ce`` is descended, along
its gradient projected not to conflict with that of ``L_kl``
(:mod:`~clipwb.trainers.kit.gradient_projection`, weight ``LOSS.LAMBDA``).

Keys as the official code names them: ``LOSS.NAME`` ("prograd"), ``LOSS.T``
(temperature), ``LOSS.LAMBDA`` (projection strength). ``TRAINER.COOP.CTX_INIT``
non-empty starts the context from words, zero-padded at the front to
``N_CTX`` vectors (the official rule); the official ``CTX_INIT: True`` (the
dataset's ProGrad template without its " {}.") is written ``"template"``
(a string key: yacs would read "True" as the boolean).
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from clipwb.engine import CfgNode, compute_accuracy, distributed
from clipwb.errors import ConfigError

from clipwb.trainers.coop import CoOp
from clipwb.trainers.kit.config import check_choice, check_min
from clipwb.trainers.kit.frozen_clip import ZeroShotCLIP, teacher_text_features
from clipwb.trainers.kit.gradient_projection import aligned_gradients
from clipwb.trainers.kit.initial_draws import consume_clip_construction
from clipwb.trainers.kit.precision import autocast_context
from clipwb.trainers.kit.prompt_learners import PromptLearner
from clipwb.trainers.kit.prompted_clip import PromptedCLIP
from clipwb.trainers.kit.templates import prograd_template

#: ``TRAINER.COOP.CTX_INIT`` value standing for the official ``True``
TEMPLATE_INIT = "template"


def extend_cfg(cfg):
    """The official ``LOSS`` node (the keys ProGrad reads)."""
    if "LOSS" not in cfg:
        cfg.LOSS = CfgNode()
    for key, value in (("NAME", "prograd"), ("T", 1.0), ("LAMBDA", 1.0)):
        if key not in cfg.LOSS:
            cfg.LOSS[key] = value


def prograd_losses(logits, zero_shot_logits, labels, temperature=1.0):
    """``(L_ce, L_kl)`` of the module docstring, as ProGradLoss computes them
    (the soft targets in float32; the student's log-probabilities in its
    logits' dtype)."""
    xe_loss = F.cross_entropy(logits, labels)
    target = F.softmax(zero_shot_logits / temperature, dim=-1)
    kl_loss = -target * F.log_softmax(logits / temperature, -1) * temperature * temperature
    return xe_loss, kl_loss.sum(1).mean()


def context_words(ctx_init, dataset_name):
    """The initial context words: ``ctx_init`` itself, or for ``"template"`` the
    dataset's ProGrad template without " {}." (underscores as spaces)."""
    words = str(ctx_init).strip()
    if words.lower() == TEMPLATE_INIT:
        words = prograd_template(dataset_name).replace(" {}.", "")
    return words.replace("_", " ")


class ProGrad(CoOp):
    """Prompt-aligned Gradient (ProGrad) on CoOp's context."""

    cfg_key = "COOP"
    #: torchrun: both losses are means over the batch, and their gradients
    #: are averaged over the ranks before the projection (aligned_gradients)
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if "LOSS" not in cfg:
            raise ConfigError("LOSS is missing: call clipwb.plugin.extend_cfg(cfg) before "
                              "merging config files (ProGrad reads LOSS.NAME, T, LAMBDA).")
        check_choice(cfg.LOSS.NAME, ("prograd",), "LOSS.NAME")
        check_min(cfg.LOSS.LAMBDA, 0, "LOSS.LAMBDA")
        if not isinstance(cfg.LOSS.T, (int, float)) or cfg.LOSS.T <= 0:
            raise ConfigError("LOSS.T = {!r} must be a number > 0 (the distillation "
                              "temperature; official: 1.0).".format(cfg.LOSS.T))
        words = context_words(cfg.TRAINER.COOP.CTX_INIT, cfg.DATASET.NAME)
        if words and len(words.split(" ")) > cfg.TRAINER.COOP.N_CTX:
            raise ConfigError(
                "TRAINER.COOP.N_CTX = {} is smaller than the {} initial context words {!r} "
                "(TRAINER.COOP.CTX_INIT): raise N_CTX or give fewer words.".format(
                    cfg.TRAINER.COOP.N_CTX, len(words.split(" ")), words))

    def build_clip_model(self, cfg, classnames, clip_model):
        node = cfg.TRAINER.COOP
        # The official trainer builds its zero-shot CLIP (a second CLIP)
        # before the prompt learner draws: the generator moves on alike.
        consume_clip_construction(clip_model)
        learner = PromptLearner(
            clip_model, classnames, n_ctx=node.N_CTX,
            ctx_init=context_words(node.CTX_INIT, cfg.DATASET.NAME), init_policy="pad_front",
            csc=node.CSC, class_token_position=node.CLASS_TOKEN_POSITION,
            param_dtype=self.learnable_dtype)
        model = PromptedCLIP(clip_model, learner)
        # Zero-shot CLIP in float32: a float32 copy of the image encoder when
        # CLIP is half, text features through the full float32 text encoder.
        visual = clip_model.visual
        if visual.conv1.weight.dtype != torch.float32:
            visual = copy.deepcopy(visual).float()
        text_features = teacher_text_features(model.text_encoder, classnames,
                                              [prograd_template(cfg.DATASET.NAME)])
        scale = nn.Parameter(clip_model.logit_scale.detach().float().clone(),
                             requires_grad=False)
        model.zero_shot = ZeroShotCLIP(visual, text_features, scale)
        return model

    def build_model(self):
        super().build_model()
        # float32 whatever PREC is (set_arithmetic set it to the student's rule)
        self.model.zero_shot.half_features = False

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        loss_cfg = self.cfg.LOSS
        with autocast_context(self.precision, self.device):
            logits = self.model(images)
            with torch.no_grad():
                zero_shot_logits = self.model.zero_shot(images)
            xe_loss, kl_loss = prograd_losses(logits, zero_shot_logits, labels, loss_cfg.T)
        self.aligned_step(xe_loss, kl_loss, loss_cfg.LAMBDA)
        self.update_lr_after_batch()
        return {"xe_loss": xe_loss.item(), "kl_loss": kl_loss.item(),
                "acc": compute_accuracy(logits, labels)[0].item()}

    def aligned_step(self, loss, general_loss, lambda_):
        """Descend ``loss`` along its gradient projected against that of
        ``general_loss`` (through the GradScaler for amp: both scaled)."""
        names = self.get_model_names()
        self.model_zero_grad(names)
        self.detect_anomaly(general_loss)
        self.detect_anomaly(loss)
        # torchrun under amp: each rank's float16 gradients at the one-process
        # size (both losses / W, the averaged gradients * W; see
        # distributed.scaled_backward); the projection is linear in them
        share = distributed.world_size() if self.scaler is not None else 1
        if self.scaler is not None:
            loss = self.scaler.scale(loss) / share
            general_loss = self.scaler.scale(general_loss) / share
        params = [p for name in names for p in self._models[name].parameters()]
        aligned_gradients(params, loss, general_loss, lambda_)
        if share != 1:
            for param in params:
                if param.grad is not None:
                    param.grad.mul_(share)
        for name in names:
            if self._optims[name] is None:
                continue
            if self.scaler is not None:
                self.scaler.step(self._optims[name])
            else:
                self._optims[name].step()
        if self.scaler is not None:
            self.scaler.update()

