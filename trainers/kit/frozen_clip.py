"""Frozen-CLIP quantities: class text features from templates, zero-shot logits.

Text features of class names x templates never change during training, so
they are computed once (at construction) and kept as a buffer; frozen image
features are computed under ``torch.no_grad()``.
"""
import copy

import torch
import torch.nn.functional as F
from clip import clip as clip_api
from torch import nn

from clipwb.trainers.kit.templates import fill_template


@torch.no_grad()
def teacher_text_features(text_encoder, classnames, templates):
    """PromptSRC's frozen text features [n_cls, D] (float32, unit norm),
    computed as the official code computes them: each template's raw
    features from a float32 CLIP's full text transformer (a float32 copy of
    the encoder when it is float16), stacked and averaged
    (``cat(...).mean(dim=1)``), then normalised."""
    encoder = text_encoder
    if encoder.dtype != torch.float32:
        encoder = copy.deepcopy(text_encoder).float()
    device = encoder.token_embedding.weight.device
    full, encoder.full_sequences = encoder.full_sequences, True
    try:
        features = []
        for template in templates:
            texts = [fill_template(template, name) for name in classnames]
            tokenized = clip_api.tokenize(texts, truncate=True).to(device)
            features.append(encoder.encode_text(tokenized).float())
    finally:
        encoder.full_sequences = full
    return F.normalize(torch.stack(features, dim=1).mean(dim=1), dim=-1)


@torch.no_grad()
def class_text_features(text_encoder, classnames, templates, normalize_each=True):
    """Frozen text features [n_cls, D] (float32, unit norm) of each class,
    averaged over ``templates``.

    ``normalize_each=True`` normalises each template's features before the
    mean (CLIP's / ZeroshotCLIP2's ensembling); ``False`` averages the raw
    features (PromptSRC's frozen text features). The mean is normalised.
    """
    device = text_encoder.token_embedding.weight.device
    total = 0
    for template in templates:
        texts = [fill_template(template, name) for name in classnames]
        tokenized = clip_api.tokenize(texts, truncate=True).to(device)
        features = text_encoder.encode_text(tokenized).float()
        if normalize_each:
            features = F.normalize(features, dim=-1)
        total = total + features
    return F.normalize(total / len(templates), dim=-1)


@torch.no_grad()
def frozen_image_features(image_encoder, images):
    """Unit-norm frozen CLIP image features [B, D] (no prompts, no gradient)."""
    return F.normalize(image_encoder(images).float(), dim=-1)


class ZeroShotCLIP(nn.Module):
    """Frozen CLIP classifier: logits = scale * cos(image, class text features).

    ``text_features`` [n_cls, D] are stored as a (non-persistent) buffer.
    ``half_features`` (the official ``PREC fp16``): image features and logits
    stay in the encoder's float16, the text features rounded to it, as
    PromptSRC's teacher computes them.
    """

    def __init__(self, image_encoder, text_features, logit_scale):
        super().__init__()
        self.image_encoder = image_encoder
        self.logit_scale = logit_scale
        self.half_features = False
        self.register_buffer("text_features", text_features.float(), persistent=False)

    def image_features(self, images):
        if self.half_features:
            with torch.no_grad():
                return F.normalize(self.image_encoder(images), dim=-1)
        return frozen_image_features(self.image_encoder, images)

    def logits_from_features(self, image_features):
        """Logits of (any) unit-norm image features against the frozen text
        features; gradients flow to ``image_features`` if they carry any."""
        scale = self.logit_scale.exp().detach().float()
        if self.half_features:
            return scale * image_features @ self.text_features.to(image_features.dtype).t()
        return scale * image_features.float() @ self.text_features.t()

    def forward_with_features(self, images):
        """``(unit-norm image features, logits)`` of the frozen model."""
        features = self.image_features(images)
        return features, self.logits_from_features(features)

    def forward(self, images):
        return self.forward_with_features(images)[1]
