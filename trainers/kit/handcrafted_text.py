"""Hand-crafted prompt features and the knowledge-guided loss of KgCoOp
(Yao et al., "Visual-Language Prompt Tuning with Knowledge-guided Context
Optimization", CVPR 2023), shared by the methods built on KgCoOp's code
(KgCoOp; TCP keeps the same hand-crafted features).

- :data:`KGCOOP_TEMPLATES` / :func:`kgcoop_template`: the one hand-crafted
  template per dataset of KgCoOp's ``CUSTOM_TEMPLATES`` (CoOp's, except the
  textures' "a photo of a {}, a type of texture.");
- :func:`handcrafted_text_features`: the frozen CLIP's features of those
  prompts, computed as the official code computes them;
- :func:`knowledge_guided_loss`: KgCoOp's L_kg as its code computes it.
"""
import copy

import torch
import torch.nn.functional as F
from clip import clip as clip_api
from clip.model import convert_weights

from clipwb.trainers.kit.templates import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE, fill_template

#: KgCoOp's hand-crafted template per dataset
KGCOOP_TEMPLATES = dict(CUSTOM_TEMPLATES,
                        DescribableTextures="a photo of a {}, a type of texture.")

#: eps of the official ``nn.CosineSimilarity(dim=1, eps=1e-07)``
COSINE_EPS = 1e-07


def kgcoop_template(dataset_name):
    """KgCoOp's template for ``dataset_name``; ``DEFAULT_TEMPLATE`` for a
    dataset the official table lacks (the official code stops there)."""
    if dataset_name not in KGCOOP_TEMPLATES:
        print('No KgCoOp template for dataset "{}"; using "{}"'.format(
            dataset_name, DEFAULT_TEMPLATE))
    return KGCOOP_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@torch.no_grad()
def handcrafted_text_features(text_encoder, classnames, template):
    """Unit-norm hand-crafted text features w_clip [n_cls, D], float16.

    As KgCoOp's prompt learner computes them: the template filled with each
    class name (underscores as spaces), encoded by a second CLIP that keeps
    CLIP's stored float16 whatever ``PREC`` is (here: the encoder itself when
    it is float16, else a copy converted as CLIP converts its weights, layer
    norms float32; the full text transformer), then divided by its norm in
    float16. ``text_encoder``: a
    :class:`~clipwb.trainers.kit.prompted_encoders.PromptedTextEncoder`.
    """
    encoder = text_encoder
    if encoder.dtype != torch.float16:
        encoder = copy.deepcopy(text_encoder)
        convert_weights(encoder)
    device = encoder.token_embedding.weight.device
    texts = [fill_template(template, name) for name in classnames]
    tokenized = clip_api.tokenize(texts, truncate=True).to(device)
    full, encoder.full_sequences = encoder.full_sequences, True
    try:
        features = encoder.encode_text(tokenized)
    finally:
        encoder.full_sequences = full
    return features / features.norm(dim=-1, keepdim=True)


def knowledge_guided_loss(text_features, handcrafted):
    """KgCoOp's L_kg = 1 - mean_i cos(w_i, w_clip_i) over the classes.

    Eq. (5) of the paper writes the mean squared Euclidean distance
    ||w_i - w_clip_i||^2 of the unit-norm features, which is 2 - 2 cos; the
    official code (``trainers/kgcoop.py``, ``CustomCLIP.forward``) computes
    ``1 - mean(cos)`` (half of it, the form reproduced here), with
    ``w_clip`` divided by its norm once more and ``eps = 1e-07``.
    ``text_features`` [n_cls, D] (unit norm, the learnable prompts'),
    ``handcrafted`` [n_cls, D] (:func:`handcrafted_text_features`).
    """
    handcrafted = handcrafted / handcrafted.norm(dim=-1, keepdim=True)
    cos = F.cosine_similarity(text_features, handcrafted, dim=1, eps=COSINE_EPS)
    return 1.0 - torch.mean(cos)
