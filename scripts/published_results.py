"""Published results that ``scripts/results.py --published`` prints beside ours.

Base-to-novel generalization, CLIP ViT-B/16, 16 shots, average over the 11
datasets. A method adds its numbers with one more entry (or, from code, with
``add_published``); the name is what the comparison table shows.
"""
from collections import OrderedDict, namedtuple

PublishedResult = namedtuple("PublishedResult", "base novel hm source")

PUBLISHED_BASE2NEW = OrderedDict([
    ("CLIP", PublishedResult(69.34, 74.22, 71.70, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoOp", PublishedResult(82.69, 63.22, 71.66, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoCoOp", PublishedResult(80.47, 71.69, 75.83, "Zhou et al., CoCoOp, CVPR 2022")),
    ("MaPLe", PublishedResult(82.28, 75.14, 78.55, "Khattak et al., MaPLe, CVPR 2023")),
    ("IVLP", PublishedResult(84.21, 71.79, 77.51, "Khattak et al., PromptSRC, ICCV 2023")),
    ("PromptSRC", PublishedResult(84.26, 76.10, 79.97, "Khattak et al., PromptSRC, ICCV 2023")),
])


def add_published(name, base, novel, hm, source):
    """Register a method's published 11-dataset base-to-novel averages."""
    PUBLISHED_BASE2NEW[name] = PublishedResult(float(base), float(novel), float(hm), source)
