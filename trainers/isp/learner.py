"""ISP's prompt learner: IVLP's deep prompts plus the structural modules.

:class:`ISPPromptLearner` is a :class:`PromptLearner` with independent deep
text and vision prompts (IVLP's parameters and state-dict names: ``ctx``,
``text_deep.*``, ``vision_ctx``, ``vision_deep.*``) and two optional module
groups, all learnable and saved with the prompts:

- ``cross`` (:class:`CrossStructuralPrompts`): applied to the per-layer prompt
  parameters (image independent, so text features are still computed once
  per evaluation). With ``cross_mode="maple"`` there is no such module and
  no independent vision prompt: as in MaPLe, the vision prompts of each layer
  are a linear map of that layer's text prompts (MaPLe's parameters and
  names: ``proj``, ``deep_proj.*``), spec item 3's degenerate case;
- ``self_text`` / ``self_vision`` (:class:`SelfStructuralPrompts`): applied
  inside the encoders, through the callable deep prompts of
  ``prompted_encoders``, to each deep layer's prompts and that layer's frozen
  tokens.

With every gate at zero the prompts it returns equal IVLP's.

Because the names are MaPLe's and IVLP's, a MaPLe or IVLP checkpoint loads
into the learner of the same prompts without the ISP-only modules
(``SELF_STRUCT False``; ``CROSS_MODE maple`` for MaPLe, ``CROSS_STRUCT
False`` for IVLP); :func:`settings_for_checkpoint` names the settings when a
checkpoint lacks the modules a config asks for.
"""
import torch

from clipwb.trainers.isp.modules import (CrossStructuralPrompts, SelfStructuralPrompts,
                                         check_maple_coupling, ignore_bias)
from clipwb.trainers.kit.prompt_learners import PromptLearner, PromptSet


class ISPPromptLearner(PromptLearner):
    """IVLP prompts + self- / cross-structural prompt modules.

    Args (besides :class:`PromptLearner`'s IVLP arguments):
        self_struct: add the self-structural blocks (one per deep layer and
            modality); ``self_width`` / ``self_heads`` size their attention.
        cross_struct: add the cross-structural module over the layers with
            both text and vision prompts; ``cross_mode`` "cross_attention" or
            "linear" (gated, beside independent vision prompts) or "maple"
            (vision prompts = linear maps of the text prompts; needs
            ``vision_n_ctx == n_ctx`` and ``vision_depth == text_depth``),
            ``cross_width`` / ``cross_heads`` size the attention.
    """

    def __init__(self, clip_model, classnames, n_ctx=2, ctx_init="", text_depth=1,
                 vision_n_ctx=0, vision_depth=0, self_struct=True, self_width=64,
                 self_heads=1, cross_struct=True, cross_mode="cross_attention",
                 cross_width=64, cross_heads=1, param_dtype=None, drawn=None):
        coupled = bool(cross_struct) and cross_mode == "maple"
        if coupled:
            check_maple_coupling(n_ctx, text_depth, vision_n_ctx, vision_depth)
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init,
                         init_policy="fixed", text_depth=text_depth,
                         vision_n_ctx=vision_n_ctx, vision_depth=vision_depth,
                         coupled=coupled, param_dtype=param_dtype,
                         drawn=None if coupled else drawn)
        text_width = clip_model.ln_final.weight.shape[0]
        vision_width = clip_model.visual.conv1.out_channels
        has_vision = coupled or hasattr(self, "vision_ctx")
        vision_deep_layers = len(self.deep_proj) if coupled else len(
            getattr(self, "vision_deep", ()))
        self.self_text = self.self_vision = self.cross = None
        if self_struct:
            if len(self.text_deep):
                self.self_text = SelfStructuralPrompts(
                    text_width, len(self.text_deep), self_width, self_heads)
            if has_vision and vision_deep_layers:
                self.self_vision = SelfStructuralPrompts(
                    vision_width, vision_deep_layers, self_width, self_heads)
        if cross_struct and has_vision and not coupled:
            layers = min(1 + len(self.text_deep), 1 + vision_deep_layers)
            self.cross = CrossStructuralPrompts(text_width, vision_width, layers, cross_mode,
                                                cross_width, cross_heads)
        # Text positions no prompt attends to, per class: the context (the
        # running prompt, replaced at every prompted layer) and the padding
        # after EOT. The encoder may stop after the last EOT, so the mask is
        # cut to the length of the tokens it receives.
        length = self.tokenized_prompts.shape[1]
        position = torch.arange(length)
        eot = self.tokenized_prompts.argmax(dim=-1).cpu()
        ignore = (position.unsqueeze(0) > eot.unsqueeze(1)) | (
            (position >= 1) & (position <= self.n_ctx)).unsqueeze(0)
        self.register_buffer("frozen_text_ignore", ignore, persistent=False)

    # -- structural modules ---------------------------------------------------
    def layer_prompts(self):
        """Per-layer prompt lists ``(text, vision)`` (layer 0 first) after the
        cross-structural exchange; vision is empty without vision prompts."""
        text = [self.ctx] + list(self.text_deep)
        if self.coupled:  # MaPLe: each layer's vision prompts map its text prompts
            shallow, deep = PromptLearner.vision_prompts(self)
            vision = [shallow] + deep
        elif hasattr(self, "vision_ctx"):
            vision = [self.vision_ctx] + list(self.vision_deep)
        else:
            vision = []
        if self.cross is not None:
            text, vision = self.cross(text, vision)
        return text, vision

    def _text_deep(self, prompts):
        """Deep text prompts: the list itself, or a per-layer callable when the
        self-structural blocks are on."""
        if not prompts or self.self_text is None:
            return prompts or None
        prepared = self.self_text.prepare(torch.stack(prompts))
        masks = {}  # the score mask for the encoder's sequence length, made once

        def prompt_for(layer, tokens):  # tokens [n_cls, L, W] entering block ``layer``
            if layer - 1 >= len(prompts):
                return None
            length = tokens.shape[1]
            if length not in masks:
                masks[length] = ignore_bias(self.frozen_text_ignore[:, :length])
            return self.self_text(layer - 1, prepared, tokens, masks[length])

        return prompt_for

    def _vision_deep(self, prompts):
        if not prompts or self.self_vision is None:
            return prompts or None
        n_prompts = prompts[0].shape[0]
        prepared = self.self_vision.prepare(torch.stack(prompts))

        def prompt_for(layer, tokens):  # tokens [B, 1 + P + n_v, W]
            if layer - 1 >= len(prompts):
                return None
            return self.self_vision(layer - 1, prepared, tokens[:, :tokens.shape[1] - n_prompts])

        return prompt_for

    def gate_parameters(self):
        """Every zero-initialised gate of the structural modules."""
        gates = []
        for group in (self.self_text, self.self_vision):
            if group is not None:
                gates.append(group.attn.gate)
        if self.cross is not None:
            gates += self.cross.gate_parameters()
        return gates

    # -- the PromptLearner interface -------------------------------------------
    def vision_prompts(self):
        _, vision = self.layer_prompts()
        if not vision:
            return None, None
        return vision[0], self._vision_deep(vision[1:])

    def forward(self, image_features=None):
        text, vision = self.layer_prompts()
        return PromptSet(
            text=self.assemble(text[0]),
            text_deep=self._text_deep(text[1:]),
            vision=vision[0] if vision else None,
            vision_deep=self._vision_deep(vision[1:]) if vision else None,
        )


def isp_learner(clip_model, classnames, node, param_dtype=None, drawn=None):
    """The learner of the ``TRAINER.ISP`` keys (``param_dtype``, ``drawn``: as
    :class:`PromptLearner`'s; MaPLe-coupled prompts draw in MaPLe's order)."""
    if node.CROSS_STRUCT and node.CROSS_MODE == "maple":
        print("ISP design: MaPLe-coupled prompts with structural prompt modules")
    else:
        print("ISP design: IVLP prompts with structural prompt modules")
    return ISPPromptLearner(
        clip_model, classnames, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT,
        text_depth=node.PROMPT_DEPTH_TEXT, vision_n_ctx=node.N_CTX_VISION,
        vision_depth=node.PROMPT_DEPTH_VISION, self_struct=node.SELF_STRUCT,
        self_width=node.SELF_WIDTH, self_heads=node.SELF_HEADS,
        cross_struct=node.CROSS_STRUCT, cross_mode=node.CROSS_MODE,
        cross_width=node.CROSS_WIDTH, cross_heads=node.CROSS_HEADS,
        param_dtype=param_dtype, drawn=drawn)


#: what each top-level entry of the learner is (for the load error)
_PART_NAMES = {"self_text": "self-structural blocks", "self_vision": "self-structural blocks",
               "cross": "cross-structural module", "vision_ctx": "independent vision prompts",
               "vision_deep": "independent vision prompts", "proj": "MaPLe coupling maps",
               "deep_proj": "MaPLe coupling maps"}


def _parts(keys):
    return {key.split(".", 1)[0] for key in keys}


def settings_for_checkpoint(lacking, unexpected):
    """``(what is missing, the TRAINER.ISP settings that fit)`` for a
    checkpoint with no weights for the learner entries ``lacking`` and with
    entries ``unexpected`` the learner has no place for; ``(None, [])`` when
    no ISP switch explains the difference (another prompt size or depth)."""
    missing, extra = _parts(lacking), _parts(unexpected)
    if not missing <= set(_PART_NAMES):
        return None, []
    settings = []
    if missing & {"self_text", "self_vision"}:
        settings.append("SELF_STRUCT False")
    if extra & {"proj", "deep_proj"}:  # MaPLe's coupled prompts
        settings.append("CROSS_STRUCT True, CROSS_MODE maple (N_CTX_VISION = N_CTX_TEXT, "
                        "PROMPT_DEPTH_VISION = PROMPT_DEPTH_TEXT)")
    elif extra & {"vision_ctx", "vision_deep"}:  # independent vision prompts
        settings.append("CROSS_MODE cross_attention or linear" if "cross" in extra
                        else "CROSS_STRUCT False")
    elif "cross" in missing:
        settings.append("CROSS_STRUCT False")
    what = sorted({_PART_NAMES[p] for p in missing})
    names = sorted(p + ".*" if any(k.startswith(p + ".") for k in lacking) else p
                   for p in missing)
    return "{} ({})".format(", ".join(what), ", ".join(names)), settings
