"""MMA: Multi-Modal Adapter (Yang et al., "MMA: Multi-Modal Adapter for
Vision-Language Models", CVPR 2024), as its official code computes it.

The frozen CLIP gets, at MMA's layer indices ``ADAPTER_START..ADAPTER_END``,
a text adapter, an image adapter and a layer both share
(:mod:`~clipwb.trainers.kit.block_adapters`: the branches, the fusion scale
``s = ADAPTER_SCALE`` and the gradient scaling); the prompts are the fixed
``"{TEXT_CTX_INIT} {class}."``. Loss (official ``forward_backward``)::

    L = CE(s_logit * f_img @ w^T, y)

with the unit-norm adapted image features ``f_img`` and the unit-norm
adapted text features ``w`` of every class (``s_logit``: CLIP's logit
scale). At inference the text features are encoded once (the official
``text_features_for_inference``; here once per evaluation).

Keys are the official ``TRAINER.MMADAPTER`` ones with the official
``train.py`` defaults. ``PREC``: the official ``fp16`` (float16 CLIP and
float16 adapters updated in place), ``fp32`` and ``amp`` (the official
default: float32 weights, float16 autocast and a GradScaler, as the official
trainer); also ``bf16``, ``fp16_master`` and ``fp32_exact`` (= ``fp32``: MMA
has no prompts to round). Checkpoints go to ``adapter_learner/`` with the
official parameter names, so official checkpoints load too.
"""
import torch
from clip import clip as clip_api

from clipwb.errors import ConfigError

from clipwb.trainers.kit.block_adapters import MultiModalAdapters
from clipwb.trainers.kit.config import add_trainer_keys, check_min
from clipwb.trainers.kit.prompt_learners import PromptSet
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder


def extend_cfg(cfg):
    add_trainer_keys(cfg, "MMADAPTER", {
        "TEXT_CTX_INIT": "",  # the words before the class name
        "PREC": "amp",  # fp16, fp32, amp (or bf16, fp16_master, fp32_exact)
        "ADAPTER_START": 4,  # first adapted layer index (0: the token embeddings)
        "ADAPTER_END": 12,  # last adapted layer index (inclusive)
        "ADAPTER_DIM": 32,  # bottleneck width of the adapters and the shared layer
        "ADAPTER_SCALE": 0.1,  # fusion scale s
    })


class AdapterLearner(MultiModalAdapters):
    """MMA's learnable part: the adapters, plus the fixed class prompts'
    token embeddings (not saved in checkpoints; rebuilt from the class
    names). Speaks the prompt-learner interface of :class:`PromptedCLIP`."""

    conditional = False
    text_deep = ()

    def __init__(self, clip_model, classnames, node, dtype=torch.float32):
        text_layers = len(clip_model.transformer.resblocks)
        image_layers = len(clip_model.visual.transformer.resblocks)
        super().__init__(clip_model.ln_final.weight.shape[0],
                         clip_model.visual.ln_post.weight.shape[0], text_layers, image_layers,
                         int(node.ADAPTER_START), int(node.ADAPTER_END), int(node.ADAPTER_DIM),
                         float(node.ADAPTER_SCALE), dtype)
        names = [name.replace("_", " ") for name in classnames]
        prompts = [node.TEXT_CTX_INIT + " " + name + "." for name in names]
        tokenized = torch.cat([clip_api.tokenize(p) for p in prompts])
        weight = clip_model.token_embedding.weight
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized.to(weight.device))
        self.register_buffer("token_embedding", embedding.to(clip_model.dtype), persistent=False)
        self.register_buffer("tokenized_prompts", tokenized.to(weight.device), persistent=False)
        self.n_cls = len(classnames)

    def forward(self, image_features=None):
        return PromptSet(text=self.adapt_token_embeddings(self.token_embedding))

    def vision_prompts(self):
        return None, None


class _AdaptedText(PromptedTextEncoder):
    """The prompted text encoder running ``hooks()`` when given none."""

    def __init__(self, clip_model, hooks):
        super().__init__(clip_model)
        self.default_hooks = hooks

    def encode(self, *args, hooks=None, **kwargs):
        return super().encode(*args, hooks=hooks or self.default_hooks(self.blocks),
                              **kwargs)


class _AdaptedImage(PromptedImageEncoder):
    """The prompted image encoder running ``hooks()`` when given none."""

    def __init__(self, clip_model, hooks):
        super().__init__(clip_model)
        self.default_hooks = hooks

    def encode(self, *args, hooks=None, **kwargs):
        return super().encode(*args, hooks=hooks or self.default_hooks(self.blocks),
                              **kwargs)


class AdaptedCLIP(PromptedCLIP):
    """:class:`PromptedCLIP` whose encoders run the learner's adapters
    (block hooks) instead of prompts."""

    def __init__(self, clip_model, learner):
        super().__init__(clip_model, learner)
        self.text_encoder = _AdaptedText(clip_model, learner.text_hooks)
        self.image_encoder = _AdaptedImage(clip_model, learner.image_hooks)


class MultiModalAdapter(ClipPromptTrainer):
    """Multi-Modal Adapter (MMA)."""

    cfg_key = "MMADAPTER"
    model_name = "adapter_learner"
    #: torchrun: per-image cross-entropy; the gradient scaling is linear (it
    #: commutes with the ranks' mean). Under amp every rank's GradScaler
    #: checks the same averaged gradients (same skip, same scale); that they
    #: skip where one process does needs distributed.scaled_backward
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.MMADAPTER
        check_min(node.ADAPTER_START, 0, self.cfg_name("ADAPTER_START"))
        check_min(node.ADAPTER_END, node.ADAPTER_START, self.cfg_name("ADAPTER_END"))
        check_min(node.ADAPTER_DIM, 1, self.cfg_name("ADAPTER_DIM"))
        if not isinstance(node.ADAPTER_SCALE, (int, float)) or node.ADAPTER_SCALE <= 0:
            raise ConfigError(
                "{} = {!r} must be a number > 0 (the backward divides by it); turn the "
                "adapters off with a smaller ADAPTER_END instead.".format(
                    self.cfg_name("ADAPTER_SCALE"), node.ADAPTER_SCALE))

    def requires_vit(self, cfg):
        return True

    def build_clip_model(self, cfg, classnames, clip_model):
        node = cfg.TRAINER.MMADAPTER
        layers = min(len(clip_model.transformer.resblocks),
                     len(clip_model.visual.transformer.resblocks))
        if node.ADAPTER_END > layers:
            raise ConfigError(
                "{} = {} but the CLIP ({}) has {} blocks in its smaller tower: use an "
                "index <= {}.".format(self.cfg_name("ADAPTER_END"), node.ADAPTER_END,
                                      cfg.MODEL.BACKBONE.NAME, layers, layers))
        learner = AdapterLearner(clip_model, classnames, node, self.learnable_dtype)
        return AdaptedCLIP(clip_model, learner)


class MMA(MultiModalAdapter):
    """The same trainer under the paper's name (keys and configs are
    ``MultiModalAdapter``'s)."""

    #: torchrun: as MultiModalAdapter (declared per class)
    torchrun_ready = True
