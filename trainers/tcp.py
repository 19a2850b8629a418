"""TCP: class-aware prompt tokens from text knowledge (Yao et al., "TCP:
Textual-based Class-aware Prompt tuning for Visual-Language Model", CVPR 2024),
built on KgCoOp, as its official code computes it:

- a generic context ``ctx`` (4 tokens) after SOS in a per-dataset prompt
  ("X X X X {class}, a type of pet.", :data:`TCP_PROMPT_TEMPLATES`);
- the Textual Knowledge Embedding (TKE) ``meta_net``: Linear(D, D/4) ->
  QuickGELU -> Linear(D/4, 4 * width) maps the frozen CLIP's hand-crafted
  class features ``w_clip`` [n_cls, D] to 4 class-aware tokens per class;
- before text block :data:`CLASS_AWARE_LAYER` (8, counted from 0) the
  tokens at the context positions become ``1.0 * class tokens + 0.0 *
  running tokens`` (a callable deep prompt of the prompted text encoder);
- loss (official ``CustomCLIP.forward``)::

      L = CE(logits, y) + 8.0 * (1 - mean_i cos(w_i, w_clip_i))

  with the logits ``scale * f_img @ w^T`` of the unit-norm features
  (KgCoOp's knowledge-guided term, :func:`knowledge_guided_loss`).

Keys are the official ones, in ``TRAINER.COOP`` (shared with CoOp and
KgCoOp). The official code reads ``TRAINER.COOP.W`` but its blocks replace
it by the hard-coded token weight 1.0, and the loss weight 8.0 and the layer
8 are hard-coded too: here they are the class constants below, and ``W`` is
not read. The official README's Adam ``eps`` of 1e-3 (an edit of Dassl's
optimizer) is set on this trainer's optimizer (:data:`ADAM_EPS`).
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from clip.model import QuickGELU
from torch import nn

from clipwb.engine import compute_accuracy
from clipwb.errors import ConfigError

from clipwb.trainers.kit.handcrafted_text import handcrafted_text_features, knowledge_guided_loss
from clipwb.trainers.kit.initial_draws import consume_clip_construction
from clipwb.trainers.kit.prompt_learners import PromptLearner, PromptSet
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP
from clipwb.trainers.kit.prompted_encoders import PromptedTextEncoder
from clipwb.trainers.kit.templates import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE

#: TCP's learnable prompt per dataset ("X X X X" are the 4 context tokens;
#: where the template starts with "a photo of a", those 4 words' places)
TCP_PROMPT_TEMPLATES = {
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "EuroSAT": "X X X X {}.",
    "StanfordCars": "X X X X {}, a type of car",
    "Food101": "X X X X {}, a type of food.",
    "SUN397": "X X X X {}.",
    "Caltech101": "X X X X {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
#: TCP's hand-crafted prompt per dataset (its ``CUSTOM_TEMPLATES_ori``):
#: CoOp's, but for three datasets
TCP_HANDCRAFTED_TEMPLATES = dict(
    CUSTOM_TEMPLATES,
    FGVCAircraft="a photo of an aircraft {}.",
    DescribableTextures="a photo of a {}, a type of texture.",
    Food101="a photo of a {}, a type of food.",
)
#: context tokens (the templates' "X X X X") and class-aware tokens per class
N_TOKENS = 4
#: text block before which the class-aware tokens go in (counted from 0)
CLASS_AWARE_LAYER = 8
#: weight of the class-aware tokens against the running ones there
TOKEN_WEIGHT = 1.0
#: weight of the knowledge-guided term
KG_WEIGHT = 8.0
#: Adam's eps (the official README's edit of Dassl's optimizer)
ADAM_EPS = 1e-3
#: the words any CTX_INIT is replaced by (the official learner ignores its value)
CTX_INIT_WORDS = "a photo of a"


def extend_cfg(cfg):
    # TRAINER.COOP's keys come from coop.py (and W from kgcoop.py)
    return cfg


def tcp_templates(dataset_name):
    """``(learnable prompt, hand-crafted prompt)`` templates of a dataset;
    for a dataset the official tables lack, "X X X X {}." and
    ``DEFAULT_TEMPLATE``."""
    if dataset_name not in TCP_PROMPT_TEMPLATES:
        print('No TCP templates for dataset "{}"; using "X X X X {{}}." and "{}"'.format(
            dataset_name, DEFAULT_TEMPLATE))
    return (TCP_PROMPT_TEMPLATES.get(dataset_name, "X X X X {}."),
            TCP_HANDCRAFTED_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE))


def mix_class_tokens(class_tokens, tokens, weight=TOKEN_WEIGHT, start=1):
    """The tokens at positions ``start .. start + n`` of ``tokens`` [N, L, W]
    after TCP's insertion: ``weight * class_tokens + (1 - weight) * tokens``
    (``class_tokens`` [N, n, W]), as the official block computes them."""
    n = class_tokens.shape[1]
    return weight * class_tokens + (1 - weight) * tokens[:, start:start + n]


class ClassAwarePromptLearner(PromptLearner):
    """CoOp's context in TCP's templates plus the TKE ``meta_net``.

    Construction order as the official learner draws: the context, a second
    CLIP build (the one encoding the hand-crafted prompts), then the
    meta-net. ``knowledge_dtype``: dtype of ``meta_net`` and of ``w_clip``
    (float16 in the official code: a float16 CLIP encodes the hand-crafted
    prompts, and ``meta_net.half()`` under ``TRAINER.COCOOP.PREC``'s default
    fp16, whatever ``TRAINER.COOP.PREC``)."""

    def __init__(self, clip_model, text_encoder, classnames, dataset_name, ctx_init="",
                 param_dtype=None, knowledge_dtype=torch.float16):
        prompt_template, handcrafted_template = tcp_templates(dataset_name)
        super().__init__(clip_model, classnames, n_ctx=N_TOKENS,
                         ctx_init=CTX_INIT_WORDS if ctx_init else "",
                         prompt_template=prompt_template, param_dtype=param_dtype)
        consume_clip_construction(clip_model)
        features = handcrafted_text_features(text_encoder, classnames, handcrafted_template)
        self.register_buffer("handcrafted_text_features", features.to(knowledge_dtype),
                             persistent=False)
        dim = features.shape[-1]
        width = clip_model.ln_final.weight.shape[0]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(dim, dim // 4)),
            ("relu", QuickGELU()),
            ("linear2", nn.Linear(dim // 4, N_TOKENS * width)),
        ])).to(knowledge_dtype)

    def class_tokens(self):
        """TKE output: class-aware tokens [n_cls, 4, width]."""
        out = self.meta_net(self.handcrafted_text_features)
        return out.reshape(out.shape[0], -1, self.ctx.shape[-1])

    def forward(self, image_features=None):
        tokens = self.class_tokens()

        def deep(layer, running):
            if layer != CLASS_AWARE_LAYER:
                return None
            return mix_class_tokens(tokens, running)

        return PromptSet(text=self.assemble(self.ctx), text_deep=deep)


class TCP(ClipPromptTrainer):
    """Textual-based Class-aware Prompt tuning (TCP)."""

    cfg_key = "COOP"
    #: torchrun: per-image cross-entropy; L_kg (and the class-aware tokens)
    #: depend on the classes only, equal on every rank
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.COOP
        if node.N_CTX != N_TOKENS:
            raise ConfigError(
                "TRAINER.COOP.N_CTX = {!r}: TCP's prompts have {} context tokens (its "
                "templates and class-aware tokens); set TRAINER.COOP.N_CTX {}.".format(
                    node.N_CTX, N_TOKENS, N_TOKENS))
        if node.CSC:
            raise ConfigError("TRAINER.COOP.CSC = True: TCP learns one generic context; "
                              "set TRAINER.COOP.CSC False.")

    def knowledge_dtype(self):
        """float16 under the official modes (fp16, fp32), else float32."""
        return torch.float16 if self.precision in ("fp16", "fp32") else torch.float32

    def build_clip_model(self, cfg, classnames, clip_model):
        learner = ClassAwarePromptLearner(
            clip_model, PromptedTextEncoder(clip_model), classnames, cfg.DATASET.NAME,
            ctx_init=cfg.TRAINER.COOP.CTX_INIT, param_dtype=self.learnable_dtype,
            knowledge_dtype=self.knowledge_dtype())
        return PromptedCLIP(clip_model, learner)

    def build_model(self):
        super().build_model()
        if self.cfg.OPTIM.NAME in ("adam", "amsgrad", "adamw", "radam"):
            for group in self.optim.param_groups:
                group["eps"] = ADAM_EPS

    def compute_loss(self, images, labels):
        output = self.model.forward_features(images)
        loss_ce = F.cross_entropy(output.logits, labels)
        loss_kg = knowledge_guided_loss(output.text_features,
                                        self.model.prompt_learner.handcrafted_text_features)
        loss = loss_ce + KG_WEIGHT * loss_kg
        return loss, {"loss": loss.item(),
                      "acc": compute_accuracy(output.logits, labels)[0].item()}
