"""The CoOp family of prompt learners, as one parametrised module.

``PromptLearner`` holds every learnable prompt of a method and returns them as
a :class:`PromptSet` for the prompted encoders:

- text context after SOS, generic or class-specific, random or from words,
  class token at the end / middle / front (CoOp);
- an image-conditioned shift of the context from a meta-net (CoCoOp), batched
  over images;
- independent deep text prompts and shallow + deep vision prompts (IVLP,
  PromptSRC);
- vision prompts coupled to the text prompts by one linear map per depth
  (MaPLe).

Learnable tensors are float32 unless ``param_dtype`` says otherwise: under
``PREC fp16`` the official code creates the text context (and CoCoOp's
meta-net, MaPLe's ``proj``) in CLIP's dtype and trains them as float16
parameters, while the deep prompts and MaPLe's deep projections stay float32
(rounded on their way into the encoders); ``param_dtype`` reproduces that.
The encoders cast every prompt to their dtype. Random initial values are drawn
in the official order (:mod:`initial_draws`); IVLP-style prompts drawn while
CLIP was built come in as ``drawn``. State-dict names follow the originals
where one exists (``ctx``, ``token_prefix``, ``token_suffix``, ``meta_net.*``,
``proj.*``).
"""
import copy
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional

import torch
from clip import clip as clip_api
from torch import nn

from clipwb.trainers.kit.initial_draws import normal_prompt

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
CTX_STD = 0.02


@dataclass
class PromptSet:
    """Prompts for one forward pass.

    ``text``: prompt embeddings [n_cls, L, d], or [B, n_cls, L, d] when
    image-conditioned; ``text_deep``: per-layer text prompts for layers
    1..depth-1; ``vision``: shallow vision prompts [n_v, W]; ``vision_deep``:
    per-layer vision prompts for layers 1..depth-1.
    """

    text: torch.Tensor
    text_deep: Optional[List[torch.Tensor]] = None
    vision: Optional[torch.Tensor] = None
    vision_deep: Optional[List[torch.Tensor]] = None


def _token_embedding(clip_model, tokenized):
    weight = clip_model.token_embedding.weight
    with torch.no_grad():
        return clip_model.token_embedding(tokenized.to(weight.device)).float().cpu()


def init_context(clip_model, n_ctx, ctx_init="", policy="word_count", n_cls=1, csc=False,
                 dtype=torch.float32):
    """Initial text context: ``(vectors, prompt_prefix, n_ctx)``.

    ``policy="word_count"`` (CoOp, CoCoOp): with init words, ``n_ctx`` becomes
    their number and the vectors are their embeddings. ``policy="fixed"``
    (IVLP, MaPLe, PromptSRC): ``n_ctx`` is kept; the first ``n_ctx`` token
    embeddings of the words are used when the words have that many tokens, and
    the prompt text keeps all the words (the originals' behaviour for "a photo
    of a"). ``policy="pad_front"`` (ProGrad): ``n_ctx`` is kept; the vectors
    are zeros with the embeddings of the first ``k`` tokens (``k``: the number
    of words) in the last ``k`` places, and the prompt text is ``n_ctx - k``
    "X" then the words. Otherwise vectors ~ N(0, 0.02), class-specific ([n_cls, n_ctx, d])
    when ``csc``, drawn in ``dtype`` as the official code draws them (CLIP's
    dtype: float16 under ``PREC fp16``).
    """
    ctx_dim = clip_model.ln_final.weight.shape[0]
    words = (ctx_init or "").replace("_", " ").strip()
    if words:
        tokenized = clip_api.tokenize(words)
        n_tokens = int(tokenized.argmax(dim=-1)) - 1
        if policy == "pad_front":
            return _padded_context(clip_model, tokenized, words, n_ctx, dtype)
        if policy == "word_count":
            n_ctx = len(words.split(" "))
        if policy == "word_count" or n_ctx <= n_tokens:
            vectors = _token_embedding(clip_model, tokenized)[0, 1:1 + n_ctx].clone()
            return vectors.to(dtype), words, n_ctx
    shape = (n_cls, n_ctx, ctx_dim) if csc else (n_ctx, ctx_dim)
    print("Initializing class-specific contexts" if csc else "Initializing a generic context")
    vectors = torch.empty(*shape, dtype=dtype)
    nn.init.normal_(vectors, std=CTX_STD)
    return vectors, " ".join(["X"] * n_ctx), n_ctx


def _padded_context(clip_model, tokenized, words, n_ctx, dtype):
    """ProGrad's initial context from words (``init_context``, "pad_front")."""
    n_words = len(words.split(" "))
    if n_words > n_ctx:
        raise ValueError("N_CTX = {} is smaller than the {} initial context words {!r}: "
                         "raise N_CTX to at least {}.".format(n_ctx, n_words, words, n_words))
    vectors = torch.zeros(n_ctx, clip_model.ln_final.weight.shape[0])
    vectors[n_ctx - n_words:] = _token_embedding(clip_model, tokenized)[0, 1:1 + n_words]
    prefix_text = " ".join(["X"] * (n_ctx - n_words) + [words])
    return vectors.to(dtype), prefix_text, n_ctx


def _normal_prompts(count, n_tokens, width, drawn=None):
    """``count`` prompts [n_tokens, width]: the tensors ``drawn`` (while CLIP
    was built) when given, else each drawn now."""
    if drawn is not None:
        if len(drawn) != count or any(t.shape != (n_tokens, width) for t in drawn):
            raise ValueError("drawn prompts {} do not fit {} x [{}, {}]".format(
                [tuple(t.shape) for t in drawn], count, n_tokens, width))
        return nn.ParameterList([nn.Parameter(t.clone()) for t in drawn])
    return nn.ParameterList([nn.Parameter(normal_prompt(n_tokens, width))
                             for _ in range(count)])


def _clamp_depth(depth, num_layers, what):
    if depth > num_layers:
        print("{} = {} exceeds the {} layers of this CLIP; prompting all {} layers".format(
            what, depth, num_layers, num_layers))
        return num_layers
    return depth


class PromptLearner(nn.Module):
    """Learnable prompts of the CoOp family (see the module docstring).

    Args:
        clip_model: the frozen ``clip.model.CLIP`` (read at construction only).
        classnames: class names (underscores read as spaces).
        n_ctx, ctx_init, init_policy, csc: text context (see :func:`init_context`).
        class_token_position: "end", "middle" or "front" (CoOp).
        conditional: add CoCoOp's meta-net (image feature -> context shift).
        text_depth: layers with text prompts (1 = shallow only).
        vision_n_ctx, vision_depth: independent vision prompts (0 = none).
        coupled: MaPLe — vision prompts are linear maps of the text prompts
            (``text_depth`` layers; ``vision_*`` are ignored).
        param_dtype: dtype of the context (and CoCoOp's meta-net, MaPLe's
            ``proj``), as the official code creates them: CLIP's dtype under
            ``PREC fp16``; float32 (default) otherwise.
        drawn: a :class:`~clipwb.trainers.kit.initial_draws.ConstructionDraws`
            holding the deep text and vision prompts drawn while CLIP was
            built (IVLP / PromptSRC's order); None draws them here.
        prompt_template: the prompt text with ``{}`` for the class name,
            whose first ``n_ctx`` tokens the context replaces (TCP's
            "X X X X {}, a type of pet."); None: "<context words> {class}.".
    """

    def __init__(self, clip_model, classnames, n_ctx=16, ctx_init="", init_policy="word_count",
                 csc=False, class_token_position="end", conditional=False, text_depth=1,
                 vision_n_ctx=0, vision_depth=0, coupled=False, param_dtype=None, drawn=None,
                 prompt_template=None):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError("class_token_position must be one of {}, got {!r}".format(
                CLASS_TOKEN_POSITIONS, class_token_position))
        if text_depth > 1 and class_token_position != "end":
            raise ValueError("deep text prompts need class_token_position 'end'")
        ctx_dim = clip_model.ln_final.weight.shape[0]
        text_layers = len(clip_model.transformer.resblocks)
        n_cls = len(classnames)

        param_dtype = param_dtype or torch.float32
        vectors, prefix_text, n_ctx = init_context(
            clip_model, n_ctx, ctx_init, init_policy, n_cls, csc and not conditional,
            dtype=param_dtype)
        print('Initial context: "{}"'.format(prefix_text))
        print("Number of context words (tokens): {}".format(n_ctx))
        self.ctx = nn.Parameter(vectors)
        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.class_token_position = class_token_position
        self.conditional = conditional

        classnames = [name.replace("_", " ") for name in classnames]
        self.name_lens = [len(clip_api._tokenizer.encode(name)) for name in classnames]
        if prompt_template is None:
            texts = [prefix_text + " " + name + "." for name in classnames]
        else:  # the context takes the places of the template's first n_ctx tokens
            texts = [prompt_template.format(name) for name in classnames]
        tokenized = clip_api.tokenize(texts, truncate=True)
        embedding = _token_embedding(clip_model, tokenized)
        # Class-dependent constants: saved with the learner (as in CoOp) but
        # dropped when a checkpoint is loaded, so new class names can be used.
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :])  # class, ".", EOS
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        order = self._token_order(embedding.shape[1])
        self.register_buffer("token_order", order, persistent=False)

        if conditional:
            vis_dim = clip_model.visual.output_dim
            self.meta_net = nn.Sequential(OrderedDict([
                ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                ("relu", nn.ReLU(inplace=True)),
                ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
            ])).to(param_dtype)

        text_depth = _clamp_depth(max(int(text_depth), 1), text_layers, "text prompt depth")
        self.coupled = coupled
        vision_width = clip_model.visual.conv1.out_channels
        vision_layers = len(getattr(getattr(clip_model.visual, "transformer", None),
                                    "resblocks", []))
        if coupled:
            # MaPLe's order: proj, then the deep text prompts, then one
            # projection cloned for every deep layer.
            if self.ctx.dim() != 2:
                raise ValueError("coupled (MaPLe) prompts need a generic context")
            depth = _clamp_depth(text_depth, vision_layers, "vision prompt depth")
            self.proj = nn.Linear(ctx_dim, vision_width).to(param_dtype)
            self.text_deep = _normal_prompts(text_depth - 1, n_ctx, ctx_dim)
            single = nn.Linear(ctx_dim, vision_width)
            self.deep_proj = nn.ModuleList([copy.deepcopy(single) for _ in range(depth - 1)])
            return
        self.text_deep = _normal_prompts(text_depth - 1, n_ctx, ctx_dim,
                                         drawn.text_deep if drawn is not None else None)
        if vision_depth > 0 and vision_n_ctx > 0:
            depth = _clamp_depth(int(vision_depth), vision_layers, "vision prompt depth")
            if drawn is not None and drawn.vision_ctx is not None:
                vision_ctx, deep = drawn.vision_ctx.clone(), drawn.vision_deep
            else:
                vision_ctx, deep = normal_prompt(vision_n_ctx, vision_width), None
            self.vision_ctx = nn.Parameter(vision_ctx)
            self.vision_deep = _normal_prompts(depth - 1, vision_n_ctx, vision_width, deep)

    # -- text prompts -------------------------------------------------------
    def _token_order(self, length):
        """Per-class permutation from the [SOS, ctx, class, rest] layout, or None."""
        if self.class_token_position == "end":
            return None
        n, half = self.n_ctx, self.n_ctx // 2
        rows = []
        for name_len in self.name_lens:
            ctx = list(range(1, 1 + n))
            cls = list(range(1 + n, 1 + n + name_len))
            rest = list(range(1 + n + name_len, length))
            if self.class_token_position == "middle":
                rows.append([0] + ctx[:half] + cls + ctx[half:] + rest)
            else:
                rows.append([0] + cls + ctx + rest)
        return torch.tensor(rows, dtype=torch.long)

    def assemble(self, ctx):
        """Prompt embeddings from a context: [n_ctx, d] or [n_cls, n_ctx, d] give
        [n_cls, L, d]; for a conditional learner, a per-image context
        [B, n_ctx, d] gives [B, n_cls, L, d]."""
        prefix, suffix = self.token_prefix, self.token_suffix
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        elif self.conditional:
            batch = ctx.shape[0]
            ctx = ctx.unsqueeze(1).expand(-1, self.n_cls, -1, -1)
            prefix = prefix.unsqueeze(0).expand(batch, -1, -1, -1)
            suffix = suffix.unsqueeze(0).expand(batch, -1, -1, -1)
        prompts = torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=-2)
        if self.token_order is not None:
            index = self.token_order.unsqueeze(-1).expand(prompts.shape[-3:])
            if prompts.dim() == 4:
                index = index.unsqueeze(0).expand_as(prompts)
            prompts = torch.gather(prompts, -2, index)
        return prompts

    def context_shift(self, image_features):
        """CoCoOp's meta-net output [B, d] for image features [B, D]."""
        weight = self.meta_net.linear1.weight
        return self.meta_net(image_features.to(weight.dtype))

    def conditional_context(self, image_features):
        """Per-image context [B, n_ctx, d] = ctx + meta_net(image feature)."""
        if image_features is None:
            raise ValueError("a conditional prompt learner needs image features")
        return self.ctx.unsqueeze(0) + self.context_shift(image_features).unsqueeze(1)

    # -- vision prompts -----------------------------------------------------
    def vision_prompts(self):
        """``(shallow [n_v, W] or None, deep list or None)``."""
        if self.coupled:
            deep = [proj(p) for proj, p in zip(self.deep_proj, self.text_deep)]
            return self.proj(self.ctx), deep
        if hasattr(self, "vision_ctx"):
            return self.vision_ctx, list(self.vision_deep)
        return None, None

    def forward(self, image_features=None):
        """All prompts as a :class:`PromptSet` (``image_features`` [B, D] are
        required by, and only used by, conditional learners)."""
        if self.conditional:
            ctx = self.conditional_context(image_features)
        else:
            ctx = self.ctx
        vision, vision_deep = self.vision_prompts()
        return PromptSet(
            text=self.assemble(ctx),
            text_deep=list(self.text_deep) or None,
            vision=vision,
            vision_deep=vision_deep or None,
        )


# Class-dependent buffers that load_model drops (CoOp's convention).
CLASS_DEPENDENT_KEYS = ("token_prefix", "token_suffix")

_LEGACY_BLOCK_PROMPT = re.compile(
    r"^(image|text)_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")


def convert_legacy_state_dict(state_dict):
    """Map a checkpoint of the original MaPLe / IVLP / PromptSRC code (whole
    CustomCLIP saved under ``MultiModalPromptLearner`` / ``VLPromptLearner``)
    to :class:`PromptLearner` names, and one of the original MMRL code (whole
    CustomCLIP under ``MultiModalRepresentationLearner``) to
    :class:`~clipwb.trainers.kit.representation_tokens.RepresentationLearner`
    names; CoOp / CoCoOp checkpoints pass unchanged."""
    legacy = any(k.startswith(("prompt_learner.", "representation_learner.")) or "VPT" in k
                 for k in state_dict)
    if not legacy:
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("representation_learner."):
            renamed[key[len("representation_learner."):]] = value
            continue
        if key == "image_encoder.proj_rep":
            renamed["proj_rep"] = value
            continue
        match = _LEGACY_BLOCK_PROMPT.match(key)
        if match:
            branch = "vision_deep" if match.group(1) == "image" else "text_deep"
            renamed["{}.{}".format(branch, int(match.group(2)) - 1)] = value
        elif key == "image_encoder.VPT":
            renamed["vision_ctx"] = value
        elif key.startswith("prompt_learner.") and ".ZS_image_encoder." not in key:
            key = key[len("prompt_learner."):]
            key = key.replace("compound_prompts_text.", "text_deep.")
            key = key.replace("compound_prompt_projections.", "deep_proj.")
            renamed[key] = value
    return renamed


# -- the learners of each config family (a node has the original key names) --
def coop_learner(clip_model, classnames, node, param_dtype=None):
    """CoOp: TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION}."""
    return PromptLearner(clip_model, classnames, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                         csc=node.CSC, class_token_position=node.CLASS_TOKEN_POSITION,
                         param_dtype=param_dtype)


def cocoop_learner(clip_model, classnames, node, param_dtype=None):
    """CoCoOp: TRAINER.COCOOP.{N_CTX, CTX_INIT} plus the meta-net."""
    return PromptLearner(clip_model, classnames, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                         conditional=True, param_dtype=param_dtype)


def ivlp_learner(clip_model, classnames, node, param_dtype=None, drawn=None):
    """Independent V-L prompts: {N_CTX_TEXT, N_CTX_VISION, CTX_INIT,
    PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION} (IVLP, PromptSRC and methods built
    on them); ``drawn``: the prompts drawn while CLIP was built."""
    print("Independent V-L design")
    return PromptLearner(clip_model, classnames, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT,
                         init_policy="fixed", text_depth=node.PROMPT_DEPTH_TEXT,
                         vision_n_ctx=node.N_CTX_VISION, vision_depth=node.PROMPT_DEPTH_VISION,
                         param_dtype=param_dtype, drawn=drawn)


def maple_learner(clip_model, classnames, node, param_dtype=None):
    """MaPLe: {N_CTX, CTX_INIT, PROMPT_DEPTH}, vision prompts coupled to text."""
    print("MaPLe design: Multi-modal Prompt Learning")
    return PromptLearner(clip_model, classnames, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                         init_policy="fixed", text_depth=node.PROMPT_DEPTH, coupled=True,
                         param_dtype=param_dtype)
