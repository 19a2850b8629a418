"""The offline toy world: procedural shape images and a tiny CLIP trained on them.

``TOY_CLIP_PATH`` is the shipped fp16 CLIP state dict (see clipwb/toyworld/README.md).
"""
import os

TOY_CLIP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_clip.pt")
