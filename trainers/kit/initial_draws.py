"""Initial random draws in the official code's order.

With the same seed, the official CoOp-family code and ours give the same
initial learnable parameters, and the same data order afterwards, only if both
consume torch's default generator in the same order and by the same amount.
The official IVLP / PromptSRC fork of CLIP draws its vision and deep text
prompts *while CLIP is built* (inside the fork's ``VisionTransformer`` and
``ResidualAttentionBlock_IVLP`` constructors, between the stock weights'
random initialisations), and PromptSRC builds two more CLIPs for its teacher
after drawing its text context. We build the stock CLIP only (no fork):

- :class:`ConstructionDraws` draws the same prompts at the same points of the
  stock construction, from torch's module-registration hooks (after the
  vision tower's ``conv1`` is set: the shallow vision prompt; after each
  block's ``ln_2`` is set: that block's deep prompt when ``1 <= i < depth``),
  so the weights drawn around them are the ones the fork draws;
- :func:`consume_clip_construction` advances the generator as building a
  plain CLIP of the same dimensions does (by building one and dropping it).

MaPLe draws everything in its prompt learner: ``proj``, then the deep text
prompts, then one projection cloned for every depth
(``PromptLearner(coupled=True)`` keeps that order). CoOp and CoCoOp draw the
context, then CoCoOp's meta-net.

Each prompt is ``normal_(std=0.02)`` on a float32 CPU tensor, as the fork
draws it. A parameter the official code creates in CLIP's dtype (the text
context under ``PREC fp16``) is drawn in that dtype: the CPU normal kernel
gives different values for float16 and float32 tensors.
"""
import contextlib
import inspect
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

CTX_STD = 0.02


def normal_prompt(n_tokens, width, dtype=torch.float32):
    """One prompt ``[n_tokens, width]`` ~ N(0, 0.02) drawn as the official code
    draws it (an empty CPU tensor, then ``nn.init.normal_``)."""
    vectors = torch.empty(n_tokens, width, dtype=dtype)
    nn.init.normal_(vectors, std=CTX_STD)
    return vectors


@dataclass
class ConstructionDraws:
    """The prompts the official IVLP fork of CLIP draws while it is built.

    Args: the IVLP keys (``N_CTX_VISION``, ``PROMPT_DEPTH_VISION``,
    ``N_CTX_TEXT``, ``PROMPT_DEPTH_TEXT``). Inside :meth:`recording` (around
    the stock ``build_model``) the tensors are drawn and kept in
    ``vision_ctx`` (shallow, or None), ``vision_deep`` and ``text_deep``
    (one per layer ``1 .. depth-1``, in layer order).
    """

    vision_n_ctx: int
    vision_depth: int
    text_n_ctx: int
    text_depth: int
    vision_ctx: Optional[torch.Tensor] = None
    vision_deep: List[torch.Tensor] = field(default_factory=list)
    text_deep: List[torch.Tensor] = field(default_factory=list)

    @classmethod
    def from_ivlp_node(cls, node):
        return cls(int(node.N_CTX_VISION), int(node.PROMPT_DEPTH_VISION),
                   int(node.N_CTX_TEXT), int(node.PROMPT_DEPTH_TEXT))

    @property
    def vision_prompts(self):
        return self.vision_depth > 0 and self.vision_n_ctx > 0

    @contextlib.contextmanager
    def recording(self):
        """Draw the prompts at their points of the CLIP construction run
        inside the context (the fork's order: the vision tower, then the text
        tower; ``tower`` turns to text when the vision tower's last module,
        ``ln_post`` or a ResNet's ``attnpool``, is set)."""
        state = {"tower": "vision", "block": 0}
        self.vision_ctx, self.vision_deep, self.text_deep = None, [], []

        def registered(parent, name, submodule):
            if name == "conv1" and state["tower"] == "vision" and self.vision_prompts \
                    and self.vision_ctx is None and isinstance(submodule, nn.Conv2d) \
                    and not hasattr(parent, "bn1"):  # a ViT's patch embedding, not a ResNet stem
                self.vision_ctx = normal_prompt(self.vision_n_ctx, submodule.out_channels)
            elif name in ("ln_post", "attnpool") and state["tower"] == "vision":
                state["tower"], state["block"] = "text", 0
            elif name == "ln_2" and hasattr(parent, "attn") and hasattr(parent, "mlp"):
                index = state["block"]
                state["block"] += 1
                width = submodule.normalized_shape[0]
                if state["tower"] == "vision":
                    if self.vision_prompts and 1 <= index < self.vision_depth:
                        self.vision_deep.append(normal_prompt(self.vision_n_ctx, width))
                elif 1 <= index < self.text_depth:
                    self.text_deep.append(normal_prompt(self.text_n_ctx, width))
            return None

        handle = module_hooks.register_module_module_registration_hook(registered)
        try:
            yield self
        finally:
            handle.remove()


def clip_dimensions(clip_model):
    """The ``clip.model.CLIP`` constructor arguments of a built CLIP."""
    visual = clip_model.visual
    text_width = clip_model.ln_final.weight.shape[0]
    dims = dict(
        embed_dim=clip_model.text_projection.shape[1],
        image_resolution=int(visual.input_resolution),
        context_length=clip_model.positional_embedding.shape[0],
        vocab_size=clip_model.token_embedding.num_embeddings,
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=len(clip_model.transformer.resblocks),
    )
    if hasattr(visual, "transformer"):
        dims.update(vision_layers=len(visual.transformer.resblocks),
                    vision_width=visual.conv1.out_channels,
                    vision_patch_size=visual.conv1.kernel_size[0])
    else:
        dims.update(vision_layers=tuple(len(getattr(visual, "layer{}".format(i)))
                                        for i in range(1, 5)),
                    vision_width=visual.layer1[0].conv1.in_channels,
                    vision_patch_size=None)
    return dims


def consume_clip_construction(clip_model, times=1):
    """Advance torch's default generator as building ``times`` plain CLIPs of
    ``clip_model``'s dimensions does (the models are built and dropped)."""
    from clip import model as clip_model_module

    from clipwb.trainers.kit.clip_loader import NO_PROMPT_DESIGN

    dims = clip_dimensions(clip_model)
    build = clip_model_module.CLIP
    try:
        takes_design = "design_details" in inspect.signature(build).parameters
    except (TypeError, ValueError):
        takes_design = False
    for _ in range(times):
        if takes_design:  # a CoOp-family fork's CLIP: its plain blocks
            build(**dims, design_details=dict(NO_PROMPT_DESIGN))
        else:
            build(**dims)
