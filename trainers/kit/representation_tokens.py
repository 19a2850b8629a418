"""Representation tokens in both CLIP towers (MMRL's mechanism, reusable).

MMRL (Guo and Gu, "MMRL: Multi-Modal Representation Learning for
Vision-Language Models", CVPR 2025) learns ``K`` tokens in a shared
representation space ``R`` [K, d_r]; before each of its layers ``l`` (the
official ``REP_LAYERS``, counted from 1) a per-layer linear map projects
``R`` to each tower's width, and the projected tokens sit right after the
first token of the sequence (SOS / CLS): inserted before the first listed
layer, they replace the running representation tokens before each later
one (layers not listed keep the running ones):

    text:  [SOS, T_l(R), w_1 .. EOT ..]      T_l = Linear_l^t(R)
    image: [CLS, V_l(R), patches]            V_l = Linear_l^v(R)

The text EOT position moves by ``K`` and the causal mask grows with the
sequence (the prompted encoders do both). The image's representation
feature is the mean of the representation tokens' last outputs, through
``ln_post`` and a learnable projection ``proj_rep`` [width, D]:

    f_rep = mean_k ln_post(x_k) @ proj_rep,  k = 1 .. K

Pieces:

- :class:`RepresentationLearner`: ``R``, the per-layer projections (drawn
  as the official learner draws them: ``R ~ N(0, 0.02)``, one
  ``Linear(d_r, visual width)``, one ``Linear(d_r, text width)``, each
  copied for every layer) and ``proj_rep`` (float32 whatever the tokens'
  dtype, as in the official vision tower);
- :func:`representation_hooks`: the :class:`BlockHooks` inserting /
  replacing a tower's tokens;
- :func:`representation_feature`: ``f_rep`` from the image tokens;
- :class:`SharedPrefix`: the blocks before the first representation layer
  see no token of the method, so their outputs are shared: the text's are
  computed once (the hand-crafted prompts never change), the images' once
  per batch for the tokens' pass and the frozen CLIP's pass (the
  regularisation's ``f_clip``); the same operations as two full passes, so
  the same numbers, without computing those blocks twice;
- :class:`ProjRepDraw`: ``proj_rep``'s initial value drawn where the official
  fork of CLIP draws it (in the vision tower's constructor, right after
  ``proj``), so the weights drawn after it are the fork's.
"""
import contextlib
import copy

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from clipwb.errors import ConfigError
from clipwb.trainers.kit.initial_draws import CTX_STD
from clipwb.trainers.kit.prompted_encoders import BlockHooks, pooled_block


def check_rep_layers(layers, text_layers, vision_layers, key="TRAINER.MMRL.REP_LAYERS"):
    """Block indices (from 0) of ``layers`` (counted from 1, ascending, each
    inside both towers), or ConfigError."""
    layers = [int(v) for v in layers]
    depth = min(text_layers, vision_layers)
    if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] > depth:
        raise ConfigError(
            "{} = {} must list ascending, distinct layers from 1 to {} (counted from 1; "
            "this CLIP has {} text and {} vision blocks), e.g. [{}].".format(
                key, layers, depth, text_layers, vision_layers,
                ", ".join(str(v) for v in range(max(1, depth // 2 + 1), depth + 1))))
    return [v - 1 for v in layers]


def representation_hooks(tokens, blocks):
    """:class:`BlockHooks` putting ``tokens[i]`` [K, W] right after position
    0 before block ``blocks[i]`` (from 0, ascending): inserted before the
    first, replacing the ``K`` running tokens before the later ones."""
    where = {block: i for i, block in enumerate(blocks)}
    first = blocks[0]

    def before(layer, x):
        if layer not in where:
            return x
        # expanded over the batch first, then permuted (the backward sums the
        # per-sample gradients in the official code's order)
        new = tokens[where[layer]].to(x.dtype).expand(x.shape[1], -1, -1).permute(1, 0, 2)
        rest = x[1:] if layer == first else x[1 + new.shape[0]:]
        return torch.cat([x[:1], new, rest], dim=0)

    return BlockHooks(before=before)


def representation_feature(visual, tokens, n_tokens, proj_rep):
    """``mean_k ln_post(x_k) @ proj_rep`` over the representation tokens'
    outputs (positions ``1 .. n_tokens`` of ``tokens`` [B, L, W]);
    ``visual``: the CLIP vision tower (its ``ln_post``)."""
    x = visual.ln_post(tokens[:, 1:1 + n_tokens]).mean(dim=1)
    return x @ proj_rep.to(x.dtype)


def run_blocks(encoder, x, layers, hooks=None):
    """Blocks ``layers`` of a prompted encoder on ``x`` [L, N, W] (each
    after the hooks' ``before``), as its ``encode`` runs them."""
    for layer in layers:
        if hooks is not None and hooks.before is not None:
            x = hooks.before(layer, x)
        x = encoder.run_block(layer, x, hooks=hooks)
    return x


class SharedPrefix:
    """Both towers of a prompted CLIP run up to block ``first`` once (module
    docstring). ``text_prefix`` is cached per autocast state (the blocks
    are frozen and the prompts fixed); a changed prompt set needs a new
    object."""

    def __init__(self, text_encoder, image_encoder, first):
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.first = first
        self._text = {}

    def text_prefix(self, prompts, tokenized):
        """``(x, eot)``: the text blocks' input at block ``first`` [L, N, W]
        (cut after the last EOT unless the encoder computes full sequences)."""
        encoder = self.text_encoder
        key = (torch.is_autocast_enabled(prompts.device.type), encoder.full_sequences,
               encoder.dtype, prompts.device)
        if key not in self._text:
            eot = encoder.eot_index(tokenized)
            if not encoder.full_sequences:
                prompts = prompts[:, :int(eot.max()) + 1]
            with torch.no_grad():
                x = run_blocks(encoder, encoder.embed(prompts), range(self.first))
            self._text = {key: (x, eot)}
        return self._text[key]

    def text_features(self, prompts, tokenized, hooks):
        """Projected EOT features [N, D] with ``hooks`` from block ``first`` on
        (the EOT moves by the tokens inserted; the last block for the EOT
        rows only unless the encoder computes full sequences)."""
        encoder = self.text_encoder
        x, eot = self.text_prefix(prompts, tokenized)
        last = encoder.num_layers - 1
        length = x.shape[0]
        for layer in range(self.first, last + 1):
            if hooks.before is not None:
                x = hooks.before(layer, x)
            if layer == last and not encoder.full_sequences:
                return encoder.run_last_block_pooled(x, eot + (x.shape[0] - length), hooks)
            x = encoder.run_block(layer, x, hooks=hooks)
        return encoder.pool(x, eot + (x.shape[0] - length))

    def image_prefix(self, images):
        """The image blocks' input at block ``first`` [L, B, W] (no gradient:
        nothing before it learns)."""
        encoder = self.image_encoder
        with torch.no_grad():
            x = encoder.visual.ln_pre(encoder.embed(images)).permute(1, 0, 2)
            return run_blocks(encoder, x, range(self.first))

    def frozen_image_features(self, x):
        """The frozen CLIP's projected CLS features [B, D] from the prefix
        ``x`` (no gradient; the last block for CLS only unless full
        sequences)."""
        encoder = self.image_encoder
        last = encoder.num_layers - 1
        with torch.no_grad():
            x = run_blocks(encoder, x, range(self.first, last))
            if encoder.full_sequences:
                return encoder.pool(encoder.run_block(last, x))
            cls = torch.zeros(x.shape[1], dtype=torch.long, device=x.device)
            return encoder.project(pooled_block(encoder.blocks[last], x, cls))

    def image_tokens(self, x, hooks):
        """``(CLS features [B, D], last block's tokens [B, L, W])`` with
        ``hooks`` from the prefix ``x`` on."""
        encoder = self.image_encoder
        x = run_blocks(encoder, x, range(self.first, encoder.num_layers), hooks)
        return encoder.pool(x), x.permute(1, 0, 2)


class RepresentationLearner(nn.Module):
    """The shared representation space, its per-layer projections to both
    towers and ``proj_rep`` (module docstring). ``n_layers`` copies of each
    projection (the same initial weights); ``param_dtype``: the tokens' and
    projections' dtype (CLIP's under the official ``PREC fp16``);
    ``proj_rep``: its initial value [visual width, D] (:class:`ProjRepDraw`)."""

    def __init__(self, n_tokens, rep_dim, text_width, visual_width, n_layers, proj_rep,
                 param_dtype=torch.float32):
        super().__init__()
        self.compound_rep_tokens = nn.Parameter(torch.empty(n_tokens, rep_dim))
        nn.init.normal_(self.compound_rep_tokens, std=CTX_STD)
        to_visual = nn.Linear(rep_dim, visual_width)
        to_text = nn.Linear(rep_dim, text_width)
        self.compound_rep_tokens_r2vproj = nn.ModuleList(
            [copy.deepcopy(to_visual) for _ in range(n_layers)])
        self.compound_rep_tokens_r2tproj = nn.ModuleList(
            [copy.deepcopy(to_text) for _ in range(n_layers)])
        self.to(param_dtype)
        self.proj_rep = nn.Parameter(proj_rep.detach().clone().float())

    @property
    def n_tokens(self):
        return self.compound_rep_tokens.shape[0]

    def forward(self):
        """``(text tokens, vision tokens)``: one [K, width] tensor per layer
        (computed layer by layer, text then vision, as the official learner:
        the backward then sums the gradients of ``R`` in the same order)."""
        rep = self.compound_rep_tokens
        text, vision = [], []
        for to_text, to_visual in zip(self.compound_rep_tokens_r2tproj,
                                      self.compound_rep_tokens_r2vproj):
            text.append(to_text(rep))
            vision.append(to_visual(rep))
        return text, vision


class ProjRepDraw:
    """Draws ``proj_rep`` as the official fork does while CLIP is built:
    ``width ** -0.5 * randn(width, D)`` right after the vision tower's
    ``proj`` is set (a parameter-registration hook; a ``draws`` object of
    :func:`~clipwb.trainers.kit.clip_loader.load_clip`). Each build inside
    :meth:`recording` draws one; the first is kept in ``proj_rep``."""

    def __init__(self):
        self.proj_rep = None

    @contextlib.contextmanager
    def recording(self):
        def registered(module, name, param):
            if name == "proj" and hasattr(module, "class_embedding") and param is not None:
                width = param.shape[0]
                scale = width ** -0.5
                drawn = scale * torch.randn(width, param.shape[1])
                if self.proj_rep is None:
                    self.proj_rep = drawn
            return None

        handle = module_hooks.register_module_parameter_registration_hook(registered)
        try:
            yield self
        finally:
            handle.remove()
