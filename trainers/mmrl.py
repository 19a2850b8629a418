"""MMRL: Multi-Modal Representation Learning (Guo and Gu, "MMRL: Multi-Modal
Representation Learning for Vision-Language Models", CVPR 2025), as its
official code (github yunncheng/MMRL, ``trainers/mmrl.py``) computes it.

Model (:mod:`~clipwb.trainers.kit.representation_tokens`): ``N_REP_TOKENS``
tokens of a shared space of width ``REP_DIM`` projected into both towers
after SOS / CLS at the layers ``REP_LAYERS`` (counted from 1), on the
hand-crafted prompt of the dataset (CoOp's template; no learnable context).
Unit-norm features ``f`` (CLS), ``f_rep`` (the representation tokens'
feature), ``w`` (text), and the logits (a fixed scale 100, not CLIP's)::

    z = 100 f w^T,   z_rep = 100 f_rep w^T,   z_fus = ALPHA z + (1 - ALPHA) z_rep

Loss (official ``MMRL_Loss``)::

    L = ALPHA CE(z, y) + (1 - ALPHA) CE(z_rep, y)
        + REG_WEIGHT (1 - mean_b cos(f_b, f_clip_b)) + REG_WEIGHT (1 - mean_c cos(w_c, w_clip_c))

``f_clip``: the frozen CLIP's unit-norm image features of the batch;
``w_clip``: its unit-norm features of the hand-crafted prompts (computed
once). Test (official ``test``): by ``TASK`` (top-level key, B2N / FS / CD)
the output is ``z_fus`` on base classes and ``z`` on novel ones (B2N with
``DATASET.SUBSAMPLE_CLASSES`` base -> ``z_fus``, else ``z``), always
``z_fus`` for FS, and for CD ``z_fus`` on ImageNet, ``z`` elsewhere.
Keys are the official ones (``TRAINER.MMRL.*``, ``TASK``); the official
``train.py`` merges per-dataset values (``REG_WEIGHT``, EuroSAT's
``REP_DIM``) after the config file: our scripts pass them
(``scripts/mmrl/official_values.sh``), with ``TASK``.
"""
import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from clip import clip as clip_api
from torch import nn

from clipwb.engine import compute_accuracy
from clipwb.errors import ConfigError

from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.kit.initial_draws import consume_clip_construction
from clipwb.trainers.kit.precision import autocast_context
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder
from clipwb.trainers.kit.representation_tokens import (ProjRepDraw, RepresentationLearner,
                                                       SharedPrefix, check_rep_layers,
                                                       representation_feature,
                                                       representation_hooks)
from clipwb.trainers.kit.templates import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE, fill_template

#: the official logit scale (fixed, whatever CLIP's logit_scale)
LOGIT_SCALE = 100.0
#: the values of ``TASK``: base-to-novel, few-shot, cross-dataset
TASKS = ("B2N", "FS", "CD")
def extend_cfg(cfg):
    add_trainer_keys(cfg, "MMRL", {
        "ALPHA": 0.7,  # weight of the class-token logits (1 - ALPHA: representation logits)
        "REG_WEIGHT": 1.0,  # weight of each regularisation term
        "REP_LAYERS": [],  # layers (from 1) taking representation tokens
        "REP_DIM": 512,  # width of the shared representation space
        "N_REP_TOKENS": 5,  # representation tokens per layer
        "PREC": "fp16",  # fp16, fp32, amp (or bf16, fp16_master, fp32_exact)
    })
    if "TASK" not in cfg:
        cfg.TASK = "B2N"  # B2N, CD, FS: the test-time rule (official top-level key)


def mmrl_template(dataset_name):
    """The hand-crafted template of a dataset (CoOp's ``CUSTOM_TEMPLATES``,
    the official table); ``DEFAULT_TEMPLATE`` for one it lacks."""
    if dataset_name not in CUSTOM_TEMPLATES:
        print('No MMRL template for dataset "{}"; using "{}"'.format(dataset_name,
                                                                     DEFAULT_TEMPLATE))
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def mmrl_loss(logits, logits_rep, image_features, text_features, image_features_clip,
              text_features_clip, labels, alpha, reg_weight):
    """The official ``MMRL_Loss`` (module docstring), summed in its order."""
    xe = F.cross_entropy(logits, labels)
    xe_rep = F.cross_entropy(logits_rep, labels)
    reg_image = 1 - torch.mean(F.cosine_similarity(image_features, image_features_clip, dim=1))
    reg_text = 1 - torch.mean(F.cosine_similarity(text_features, text_features_clip, dim=1))
    return alpha * xe + (1 - alpha) * xe_rep + reg_weight * reg_image + reg_weight * reg_text


def evaluation_logits(output, task, subsample_classes, dataset_name):
    """The official test-time rule (module docstring): the output of an
    :class:`MMRLOutput` the evaluator scores."""
    if task == "B2N":
        return output.logits_fusion if subsample_classes == "base" else output.logits
    if task == "FS":
        return output.logits_fusion
    if task == "CD":
        return output.logits_fusion if dataset_name == "ImageNet" else output.logits
    raise ConfigError("TASK = {!r} is not valid: use one of {}.".format(task, ", ".join(TASKS)))


@dataclass
class MMRLOutput:
    """The logits and unit-norm features of a batch (module docstring)."""

    logits: torch.Tensor
    logits_rep: torch.Tensor
    logits_fusion: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    #: the frozen CLIP's unit-norm image features (``forward_features(frozen=True)``)
    image_features_clip: Optional[torch.Tensor] = None


class MMRLCLIP(nn.Module):
    """Frozen CLIP with representation tokens (the official ``CustomCLIP``).

    ``half_features``: features and logits stay in the encoders' dtype (the
    official ``PREC fp16``) instead of float32."""

    def __init__(self, clip_model, classnames, template, learner, rep_blocks, alpha):
        super().__init__()
        self.representation_learner = learner
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.image_encoder = PromptedImageEncoder(clip_model)
        self.rep_blocks = list(rep_blocks)
        self.prefix = SharedPrefix(self.text_encoder, self.image_encoder, self.rep_blocks[0])
        self.alpha = alpha
        self.half_features = False
        texts = [fill_template(template, name) for name in classnames]
        tokenized = clip_api.tokenize(texts, truncate=True)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        with torch.no_grad():
            embeddings = self.text_encoder.embed_tokens(tokenized)
        self.register_buffer("prompt_embeddings", embeddings, persistent=False)
        self._cache = None
        self._caching = False

    def unit(self, features):
        """``features / ||features||`` (float32 unless ``half_features``)."""
        features = features if self.half_features else features.float()
        return features / features.norm(dim=-1, keepdim=True)

    def encode_text(self, text_tokens):
        hooks = representation_hooks(text_tokens, self.rep_blocks)
        return self.prefix.text_features(self.prompt_embeddings, self.tokenized_prompts, hooks)

    def encode_image(self, prefix, vision_tokens):
        """``(f, f_rep)``, not normalised, from the image prefix
        (:meth:`SharedPrefix.image_prefix`)."""
        features, tokens = self.prefix.image_tokens(
            prefix, representation_hooks(vision_tokens, self.rep_blocks))
        rep = representation_feature(self.image_encoder.visual, tokens,
                                     self.representation_learner.n_tokens,
                                     self.representation_learner.proj_rep)
        return features, rep

    def _tokens_and_text(self):
        if self._caching and not torch.is_grad_enabled():
            if self._cache is None:
                text_tokens, vision_tokens = self.representation_learner()
                self._cache = (vision_tokens, self.encode_text(text_tokens))
            return self._cache
        text_tokens, vision_tokens = self.representation_learner()
        return vision_tokens, self.encode_text(text_tokens)

    @contextlib.contextmanager
    def text_cache(self):
        """Within the context (gradients off) the text features and vision
        tokens are computed once, as the official evaluation does."""
        self._caching, self._cache = True, None
        try:
            yield self
        finally:
            self._caching, self._cache = False, None

    def forward_features(self, images, frozen=False):
        """Logits and features of a batch; ``frozen``: the frozen CLIP's
        image features too (the blocks before the first representation
        layer computed once for both)."""
        vision_tokens, text = self._tokens_and_text()
        prefix = self.prefix.image_prefix(images)
        image, image_rep = self.encode_image(prefix, vision_tokens)
        image, image_rep, text = self.unit(image), self.unit(image_rep), self.unit(text)
        logits = LOGIT_SCALE * image @ text.t()
        logits_rep = LOGIT_SCALE * image_rep @ text.t()
        fusion = self.alpha * logits + (1 - self.alpha) * logits_rep
        clip = self.unit(self.prefix.frozen_image_features(prefix)) if frozen else None
        return MMRLOutput(logits, logits_rep, fusion, image, text, clip)

    def forward(self, images):
        return self.forward_features(images).logits_fusion


class MMRL(ClipPromptTrainer):
    """Multi-Modal Representation Learning (MMRL)."""

    cfg_key = "MMRL"
    learnable_module = "representation_learner"
    #: torchrun: both cross-entropies and the image term are means over the
    #: images; the text term a mean over the classes, equal on every rank
    torchrun_ready = True
    legacy_model_names = ("MultiModalRepresentationLearner",)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.MMRL
        check_min(node.N_REP_TOKENS, 1, self.cfg_name("N_REP_TOKENS"))
        check_min(node.REP_DIM, 1, self.cfg_name("REP_DIM"))
        check_min(node.REG_WEIGHT, 0, self.cfg_name("REG_WEIGHT"))
        check_min(node.ALPHA, 0, self.cfg_name("ALPHA"))
        check_choice(cfg.get("TASK", "B2N"), TASKS, "TASK")
        if not node.REP_LAYERS:
            raise ConfigError("TRAINER.MMRL.REP_LAYERS is empty: list the layers (from 1) "
                              "taking representation tokens, e.g. [6, 7, 8, 9, 10, 11, 12] "
                              "on ViT-B/16.")

    def requires_vit(self, cfg):
        return True

    def construction_draws(self, cfg):
        # the official fork draws proj_rep inside the vision tower's constructor
        return ProjRepDraw()

    def build_clip_model(self, cfg, classnames, clip_model):
        node = cfg.TRAINER.MMRL
        blocks = check_rep_layers(node.REP_LAYERS, len(clip_model.transformer.resblocks),
                                  len(clip_model.visual.transformer.resblocks))
        # the official code builds a second CLIP (the zero-shot one, same fork:
        # proj_rep drawn again) before its learner draws
        with ProjRepDraw().recording():
            consume_clip_construction(clip_model)
        template = mmrl_template(cfg.DATASET.NAME)
        learner = RepresentationLearner(
            int(node.N_REP_TOKENS), int(node.REP_DIM), clip_model.ln_final.weight.shape[0],
            clip_model.visual.conv1.out_channels, len(blocks), self.drawn.proj_rep,
            param_dtype=self.learnable_dtype)
        model = MMRLCLIP(clip_model, classnames, template, learner, blocks, float(node.ALPHA))
        model.register_buffer("text_features_clip",
                              self.zero_shot_text_features(model), persistent=False)
        return model

    @staticmethod
    @torch.no_grad()
    def zero_shot_text_features(model):
        """The frozen CLIP's unit-norm features of the hand-crafted prompts,
        in CLIP's dtype, over the full 77 tokens (the official
        ``TextEncoder_CLIP``)."""
        encoder = model.text_encoder
        full, encoder.full_sequences = encoder.full_sequences, True
        try:
            features = encoder(model.prompt_embeddings, model.tokenized_prompts)
        finally:
            encoder.full_sequences = full
        return features / features.norm(dim=-1, keepdim=True)

    def compute_loss(self, images, labels):
        model = self.model
        out = model.forward_features(images, frozen=True)
        text_clip = model.text_features_clip
        if not model.half_features:
            text_clip = text_clip.float()
        node = self.method_cfg
        loss = mmrl_loss(out.logits, out.logits_rep, out.image_features, out.text_features,
                         out.image_features_clip, text_clip, labels, node.ALPHA,
                         node.REG_WEIGHT)
        return loss, {"loss": loss.item(),
                      "acc": compute_accuracy(out.logits_fusion, labels)[0].item()}

    def model_inference(self, input):
        with autocast_context(self.precision, self.device):
            out = self.model.forward_features(input)
        cfg = self.cfg
        return evaluation_logits(out, cfg.get("TASK", "B2N"),
                                 cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"),
                                 cfg.DATASET.NAME).float()

    def test(self, split=None):
        with self.model.text_cache():
            return super().test(split)
