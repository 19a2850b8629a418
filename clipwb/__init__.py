"""clipwb: DiSa, ISP and GuiDG (and the CoOp-family baselines) as a Dassl plugin.

One package, importable from any directory after ``pip install -e .`` (or
``pip install git+<repo url>``):

- ``clipwb.plugin``: importing it registers the plugin's trainers and datasets
  into whichever Dassl is in use; ``clipwb.plugin.extend_cfg(cfg)`` adds
  their config keys (what a host checkout's ``train.py`` calls);
- ``clipwb.dropin``: ``python -m clipwb.dropin CHECKOUT`` puts the plugin into
  a CoOp / MaPLe / PromptSRC checkout (and ``--undo`` takes it out);
- ``clipwb.trainers``, ``clipwb.datasets``: the code, kept in this
  repository's top-level ``trainers/`` and ``datasets/`` folders;
- ``clipwb.engine``: the Dassl facade (real Dassl, or the built-in engine);
- ``clipwb.toyworld``: the offline toy world and its small CLIP.
"""
__version__ = "0.2.0"

import warnings as _warnings

# openai-clip imports pkg_resources, whose import warns that it is deprecated
# (setuptools<81 is pinned for it): say nothing about it on every command.
_warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API",
                         category=UserWarning)
