"""Per-layer bottleneck adapters of both CLIP towers with a shared middle
layer, acting inside the stock blocks through :class:`BlockHooks` (MMA:
Yang et al., "MMA: Multi-Modal Adapter for Vision-Language Models", CVPR
2024; reusable by any method that adds a residual branch to the blocks).

Layer indices are MMA's: index ``k >= 1`` is text / image block ``k - 1``
(0-based), index 0 the token embeddings (text, before the positional
embedding) and the patch tokens after ``ln_pre`` (image). For an index ``k``
in ``[start, end]`` each tower has an adapter ``A_k = (down_k, up_k)``
(``down``: Linear(width, dim) + ReLU; ``up``: Linear(dim, width)) and both
towers share ``S_k`` (Linear(dim, dim) + ReLU). With the fusion scale ``s``:

- block ``k - 1`` (``k >= 1``)::

      x' = x + attn(ln_1 x);   out = x' + mlp(ln_2 x') + r_k(x)
      r_k(x) = G_{1/s}( s * up_k(S_k(down_k(ln_1(G_s(x))))) )

  where ``G_c`` is the identity whose backward multiplies the gradient by
  ``c`` (:class:`GradientScale`): the adapter's parameters get the gradient
  of an unscaled branch, the block input ``s`` times it (MMA's official
  ``gradient_scale_layer``);
- index 0, image: ``x0 = ln_pre(x) + s * up_0(S_0(down_0(ln_pre(x))))``;
- index 0, text: ``e0 = e + s * up_0(S_0(down_0(e)))`` on the token
  embeddings ``e`` (no layer norm, no gradient scaling).

Initial values as the official code draws them: each adapter list (text,
then image, then shared) is built whole with torch's default Linear
initialisation, then every Linear of that list, in module order, gets
``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` and a zero bias.
The parameter names (``text_adapter.5.down.0.weight``, ...,
``shared_adapter.5.0.bias``) are the official checkpoint's.
"""
import torch
from torch import nn

from clipwb.trainers.kit.prompted_encoders import BlockHooks


class GradientScale(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_gradient(x, scale):
    """``x`` unchanged; its gradient multiplied by ``scale`` on the way back."""
    return GradientScale.apply(x, scale)


class ModalityAdapter(nn.Module):
    """One tower's adapter of one layer: ``down`` (Linear + ReLU) to ``dim``,
    then ``up`` back to ``width``; the shared layer goes in between."""

    def __init__(self, width, dim):
        super().__init__()
        self.down = nn.Sequential(nn.Linear(width, dim), nn.ReLU())
        self.up = nn.Linear(dim, width)

    def forward(self, h, shared=None):
        h = self.down(h)
        if shared is not None:
            h = shared(h)
        return self.up(h)


def shared_layer(dim):
    """The layer both towers share at one index: Linear(dim, dim) + ReLU."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU())


def adapter_list(n_layers, start, end, make):
    """``nn.ModuleList`` of ``n_layers + 1`` entries (indices 0..n_layers):
    ``make()`` at the indices ``start..end``, None elsewhere; then the
    official re-initialisation of every Linear in module order."""
    entries = [make() if start <= i <= end else None for i in range(n_layers + 1)]
    modules = nn.ModuleList(entries)
    for module in modules.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(module.bias, 0)
    return modules


class MultiModalAdapters(nn.Module):
    """MMA's adapters of both towers and the shared layers (module docstring).

    Args: ``text_width`` / ``image_width`` (the towers' widths),
    ``text_layers`` / ``image_layers`` (their block counts; the shared list
    has as many entries as the image one, as in the official code),
    ``start`` / ``end`` (MMA's layer indices, inclusive), ``dim`` (the
    bottleneck), ``scale`` (``s``), ``dtype`` (the parameters' dtype).
    ``enabled = False`` turns every adapter off (the stock CLIP).
    """

    def __init__(self, text_width, image_width, text_layers, image_layers, start, end, dim,
                 scale, dtype=torch.float32):
        super().__init__()
        self.text_adapter = adapter_list(text_layers, start, end,
                                         lambda: ModalityAdapter(text_width, dim))
        self.visual_adapter = adapter_list(image_layers, start, end,
                                           lambda: ModalityAdapter(image_width, dim))
        self.shared_adapter = adapter_list(image_layers, start, end, lambda: shared_layer(dim))
        self.to(dtype)
        self.scale = float(scale)
        self.enabled = True

    @staticmethod
    def _entry(modules, index):
        return modules[index] if 0 <= index < len(modules) else None

    def branch(self, adapters, index, h):
        """``up_k(S_k(down_k(h)))`` in the adapters' dtype, returned in
        ``h``'s; None where the tower has no adapter at ``index``."""
        adapter = self._entry(adapters, index) if self.enabled else None
        if adapter is None:
            return None
        dtype = adapter.up.weight.dtype
        return adapter(h.to(dtype), self._entry(self.shared_adapter, index))

    def adapt_token_embeddings(self, embedding):
        """Index 0 of the text tower: ``e + s * up_0(S_0(down_0(e)))``."""
        out = self.branch(self.text_adapter, 0, embedding)
        if out is None:
            return embedding
        return embedding + (self.scale * out).to(embedding.dtype)

    def block_residual(self, adapters, layer, block, x):
        """``r_k(x)`` of block ``layer`` (``k = layer + 1``), or None."""
        adapter = self._entry(adapters, layer + 1) if self.enabled else None
        if adapter is None:
            return None
        h = block.ln_1(scale_gradient(x, self.scale))
        out = self.branch(adapters, layer + 1, h) * self.scale
        return scale_gradient(out, 1.0 / self.scale).to(x.dtype)

    def _hooks(self, adapters, blocks, first=None):
        """:class:`BlockHooks` running ``adapters``; ``first(x)``: index 0 on
        the block-0 input. With the encoder's ``blocks``, each block's
        residual is computed from its input before the block runs (kept
        until the block's output asks for it), as the official block
        computes its branch first: the backward then sums each input's
        gradients in the official order, bit for bit."""
        pending = {}

        def before(layer, x):
            if layer == 0 and first is not None:
                x = first(x)
            if blocks is not None:
                pending[layer] = (x.shape, self.block_residual(adapters, layer, blocks[layer], x))
            return x

        def residual(layer, block, x):
            shape, term = pending.pop(layer, (None, None))
            if shape == x.shape:
                return term
            return self.block_residual(adapters, layer, block, x)  # the pooled rows only

        return BlockHooks(before=before, residual=residual)

    def text_hooks(self, blocks=None):
        """:class:`BlockHooks` of the text encoder (index 0 is the learner's:
        :meth:`adapt_token_embeddings`); ``blocks``: the encoder's blocks."""
        return self._hooks(self.text_adapter, blocks)

    def image_hooks(self, blocks=None):
        """:class:`BlockHooks` of the image encoder: index 0 on the block-0
        input (the tokens after ``ln_pre``), then the block residuals."""
        def first(x):
            # on the batch-first tokens, as the official code adds it before
            # the permute (the weight gradients then sum the rows in its order)
            out = self.branch(self.visual_adapter, 0, x.permute(1, 0, 2))
            if out is None:
                return x
            return x + (out * self.scale).to(x.dtype).permute(1, 0, 2)

        return self._hooks(self.visual_adapter, blocks, first)
