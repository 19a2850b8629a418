"""CLIP with learnable prompts: prompt learner + prompted encoders -> logits.

``PromptedCLIP`` is the "CustomCLIP" of every CoOp-family method built here.
Prompts that do not depend on the image give text features that can be
computed once per evaluation: inside :func:`text_feature_cache` (and with
gradients off) they are encoded on the first batch and reused.
"""
import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder


@dataclass
class CLIPOutput:
    """Logits [B, n_cls] and the unit-norm features they come from
    (text features [n_cls, D], or [B, n_cls, D] for image-conditioned prompts);
    from :meth:`PromptedCLIP.forward_features` also the encoders' outputs
    before normalising (``image_raw``, ``text_raw``: DePT's head reads them)."""

    logits: torch.Tensor
    image_features: torch.Tensor
    text_features: torch.Tensor
    image_raw: torch.Tensor = None
    text_raw: torch.Tensor = None


class PromptedCLIP(nn.Module):
    """Frozen CLIP encoders driven by a :class:`PromptLearner`.

    ``half_features``: features and logits stay in the encoders' dtype
    (float16 under the official ``PREC fp16``: normalised and multiplied in
    float16 as the official code does) instead of float32.

    Any learner with the same interface works: ``forward() -> PromptSet``,
    ``vision_prompts()``, ``tokenized_prompts``, ``text_deep``, ``n_cls``,
    ``conditional`` (and ``conditional_context`` / ``assemble`` when true).
    ``text_chunk`` bounds how many prompt sequences go through the text
    encoder at once for image-conditioned prompts (batch x classes).
    """

    def __init__(self, clip_model, prompt_learner, text_chunk=4096):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.text_encoder = PromptedTextEncoder(clip_model)
        self.image_encoder = PromptedImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.text_chunk = text_chunk
        self._cache_enabled = False
        self._text_cache = None
        self.half_features = False

    def _unit(self, features):
        """Unit-norm features, in float32 unless ``half_features``."""
        return F.normalize(features if self.half_features else features.float(), dim=-1)

    # -- text ----------------------------------------------------------------
    def encode_prompts(self, prompts):
        """Unit-norm text features [n_cls, D] of a :class:`PromptSet`."""
        return self._unit(self.raw_prompt_features(prompts))

    def raw_prompt_features(self, prompts):
        """The text encoder's output [n_cls, D] for a :class:`PromptSet`
        (not normalised, in the encoder's dtype)."""
        tokenized = self.prompt_learner.tokenized_prompts
        return self.text_encoder(prompts.text, tokenized, prompts.text_deep)

    def encode_conditional(self, image_features):
        """Unit-norm text features [B, n_cls, D] of image-conditioned prompts
        (:meth:`raw_conditional_features`, normalised)."""
        return self._unit(self.raw_conditional_features(image_features))

    def raw_conditional_features(self, image_features):
        """Text features [B, n_cls, D] of image-conditioned prompts, not normalised.

        The prompts of several images go through the text encoder together
        (at most ``text_chunk`` sequences at a time, so that a large test batch
        times many classes stays within memory).
        """
        learner = self.prompt_learner
        ctx = learner.conditional_context(image_features)
        eot = self.text_encoder.eot_index(learner.tokenized_prompts)
        deep = list(learner.text_deep) or None
        per_chunk = max(1, self.text_chunk // learner.n_cls)
        if self.text_encoder.full_sequences:  # one image at a time, as the official loop
            per_chunk = 1
        parts = []
        for start in range(0, ctx.shape[0], per_chunk):
            text = learner.assemble(ctx[start:start + per_chunk])  # [b, n_cls, L, d]
            b = text.shape[0]
            flat = text.reshape(b * learner.n_cls, *text.shape[2:])
            features = self.text_encoder(flat, eot.repeat(b), deep)
            parts.append(features.reshape(b, learner.n_cls, -1))
        return torch.cat(parts)

    def _cache_usable(self):
        return (self._cache_enabled and not torch.is_grad_enabled()
                and not self.prompt_learner.conditional)

    def enable_text_cache(self):
        self._cache_enabled = True
        self._text_cache = None

    def disable_text_cache(self):
        self._cache_enabled = False
        self._text_cache = None

    # -- image ---------------------------------------------------------------
    def encode_images(self, images, vision=None, vision_deep=None, keep_index=None,
                      masked_patches=None):
        """Unit-norm (prompted) image features [B, D] (patches removed by
        ``keep_index`` or ``masked_patches``: ``PromptedImageEncoder.encode``)."""
        return self._unit(self.image_encoder(images, vision, vision_deep, keep_index,
                                             masked_patches=masked_patches))

    # -- both ----------------------------------------------------------------
    def forward_features(self, images, keep_index=None):
        """Logits and features for a batch (a :class:`CLIPOutput`)."""
        scale = self.logit_scale.exp().float()
        learner = self.prompt_learner
        if learner.conditional:
            image_raw = self.image_encoder(images, None, None, keep_index)
            image_features = self._unit(image_raw)
            text_raw = self.raw_conditional_features(image_features)
            text_features = self._unit(text_raw)
            if self.text_encoder.full_sequences:  # the official per-image products
                logits = torch.stack([(scale * f) @ t.t()
                                      for f, t in zip(image_features, text_features)])
            else:
                logits = torch.einsum("bd,bkd->bk", scale * image_features, text_features)
            return CLIPOutput(logits, image_features, text_features, image_raw, text_raw)

        if self._cache_usable() and self._text_cache is not None:
            text_raw, text_features = self._text_cache
            vision, vision_deep = learner.vision_prompts()
        else:
            prompts = learner()
            text_raw = self.raw_prompt_features(prompts)
            text_features = self._unit(text_raw)
            vision, vision_deep = prompts.vision, prompts.vision_deep
            if self._cache_usable():
                self._text_cache = (text_raw, text_features)
        image_raw = self.image_encoder(images, vision, vision_deep, keep_index)
        image_features = self._unit(image_raw)
        logits = scale * image_features @ text_features.t()
        return CLIPOutput(logits, image_features, text_features, image_raw, text_raw)

    def forward(self, images):
        return self.forward_features(images).logits


def set_arithmetic(model, round_prompts=False, half_features=False, full_sequences=False):
    """Set the precision rules of every prompted encoder and CLIP in
    ``model`` (:mod:`~clipwb.trainers.kit.precision`: ``rounds_prompts``,
    ``keeps_half_features``; ``full_sequences``: the encoders' shortcuts off,
    see :mod:`~clipwb.trainers.kit.prompted_encoders`)."""
    for module in model.modules():
        if isinstance(module, (PromptedTextEncoder, PromptedImageEncoder)):
            module.round_prompts = round_prompts
            module.full_sequences = full_sequences
        elif hasattr(module, "half_features"):
            module.half_features = half_features
    return model


@contextlib.contextmanager
def text_feature_cache(model):
    """Within the context, every :class:`PromptedCLIP` in ``model`` encodes its
    image-independent text prompts once (gradients off) and reuses them; the
    cache is dropped on exit, so later training steps see fresh prompts."""
    modules = [m for m in model.modules() if isinstance(m, PromptedCLIP)]
    for module in modules:
        module.enable_text_cache()
    try:
        yield model
    finally:
        for module in modules:
            module.disable_text_cache()
