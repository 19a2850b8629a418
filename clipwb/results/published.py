"""Published results that ``scripts/results.py`` prints beside ours.

Base-to-novel generalization, CLIP ViT-B/16, 16 shots: ``PUBLISHED_BASE2NEW``
holds the averages over the 11 datasets, ``PUBLISHED_BASE2NEW_PER_DATASET``
the per-dataset numbers (method -> dataset config name -> result, e.g.
``"PromptSRC" -> "dtd"``). The method name is what the comparison tables show
and what a trainer's runs are compared with (``aggregate.published_method``:
the trainer's own name, case aside; CLIP for the zero-shot CLIP trainers).
Every entry carries its source (paper, table); a method adds its numbers
with one more entry, or from code with ``add_published``, which refuses an
entry whose HM is not 2BN/(B+N) of its Base and Novel (a typo).

No per-dataset base-to-novel numbers are recorded yet. The tables that hold
them (CoCoOp, CVPR 2022, Table 1: CLIP, CoOp, CoCoOp; MaPLe, CVPR 2023,
Table 1; PromptSRC, ICCV 2023, Table 1) could not be read from any stored
copy of the papers, the official READMEs and project pages give the
11-dataset averages only, and the method specs (DiSa, ISP, GuiDG) confirm
only the averages below; numbers from elsewhere are not copied in. DiSa and
ISP have no published row for the same reason (their result tables could
not be read).
"""
from collections import OrderedDict, namedtuple

from clipwb.errors import UserInputError

PublishedResult = namedtuple("PublishedResult", "base novel hm source")

PUBLISHED_BASE2NEW = OrderedDict([
    ("CLIP", PublishedResult(69.34, 74.22, 71.70, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoOp", PublishedResult(82.69, 63.22, 71.66, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoCoOp", PublishedResult(80.47, 71.69, 75.83, "Zhou et al., CoCoOp, CVPR 2022")),
    ("MaPLe", PublishedResult(82.28, 75.14, 78.55, "Khattak et al., MaPLe, CVPR 2023")),
    ("IVLP", PublishedResult(84.21, 71.79, 77.51, "Khattak et al., PromptSRC, ICCV 2023")),
    ("PromptSRC", PublishedResult(84.26, 76.10, 79.97, "Khattak et al., PromptSRC, ICCV 2023")),
])


# method -> OrderedDict(dataset config name -> PublishedResult); see the docstring.
PUBLISHED_BASE2NEW_PER_DATASET = OrderedDict()


# a published HM is 2BN/(B+N) of the published (rounded) Base and Novel to
# within this much: the rounding of three numbers to 2 decimals
HM_TOLERANCE = 0.02


def published_problems(result):
    """What is wrong with a ``PublishedResult``: no source, or an HM that is
    not 2BN/(B+N) of its Base and Novel to within ``HM_TOLERANCE``; [] when
    nothing is."""
    problems = []
    if not (result.source or "").strip():
        problems.append("no source (paper, table)")
    total = result.base + result.novel
    hm = 2.0 * result.base * result.novel / total if total else 0.0
    if abs(hm - result.hm) > HM_TOLERANCE:
        problems.append("HM {:.2f} but 2BN/(B+N) of Base {:.2f} and Novel {:.2f} is {:.2f}".format(
            result.hm, result.base, result.novel, hm))
    return problems


def add_published(name, base, novel, hm, source, dataset=None):
    """Register a method's published base-to-novel numbers: the 11-dataset
    averages, or with ``dataset`` (a config name such as ``dtd``) that
    dataset's. A missing source or an HM that does not match Base and Novel
    (``published_problems``) raises ``UserInputError``."""
    result = PublishedResult(float(base), float(novel), float(hm), source)
    problems = published_problems(result)
    if problems:
        raise UserInputError("published numbers of {}{}: {}. Give the numbers and the source "
                             "exactly as the paper's table has them.".format(
                                 name, " on " + dataset if dataset else "", "; ".join(problems)))
    if dataset is None:
        PUBLISHED_BASE2NEW[name] = result
    else:
        PUBLISHED_BASE2NEW_PER_DATASET.setdefault(name, OrderedDict())[dataset] = result


def published_for_dataset(dataset):
    """``OrderedDict(method -> PublishedResult)`` of one dataset's published numbers."""
    return OrderedDict((name, per[dataset]) for name, per in PUBLISHED_BASE2NEW_PER_DATASET.items()
                       if dataset in per)


# ------------------------------------------------------------------ GuiDG
# Domain generalization, leave-one-domain-out, CLIP ViT-B/16, top-1 accuracy
# (%) per target domain and the average: GuiDG (AAAI 2026), appendix Table 8.
# Keys are the dataset config names; domains are in the table's column order.
PublishedDG = namedtuple("PublishedDG", "domains labels rows source")

_TABLE8 = "GuiDG, AAAI 2026, appendix Table 8"
PUBLISHED_DG = OrderedDict([
    ("terra_incognita", PublishedDG(
        ["location_100", "location_38", "location_43", "location_46"],
        ["L100", "L38", "L43", "L46"],
        OrderedDict([
            ("CLIP (zero-shot)", [50.8, 23.4, 32.2, 28.8, 33.8]),
            ("ERM (WF)", [57.1, 54.8, 48.5, 43.6, 51.0]),
            ("ERM (WF) + GuiDG", [59.2, 56.0, 50.1, 46.2, 52.9]),
            ("UEO (WF)", [58.7, 57.5, 47.6, 42.2, 51.5]),
            ("UEO (WF) + GuiDG", [57.7, 60.0, 48.2, 43.4, 52.3]),
            ("CLIPood", [73.1, 58.4, 57.7, 50.9, 60.0]),
            ("CLIPood + GuiDG", [74.7, 59.8, 56.8, 52.3, 60.9]),
        ]), _TABLE8)),
    ("vlcs", PublishedDG(
        ["Caltech101", "LabelMe", "SUN09", "VOC2007"], ["C", "L", "S", "V"],
        OrderedDict([
            ("CLIP (zero-shot)", [100.0, 67.4, 73.5, 86.1, 81.8]),
            ("ERM (WF)", [100.0, 66.1, 76.8, 90.1, 83.3]),
            ("ERM (WF) + GuiDG", [100.0, 68.0, 77.4, 89.9, 83.8]),
            ("UEO (WF)", [100.0, 60.1, 76.2, 88.9, 81.3]),
            ("UEO (WF) + GuiDG", [100.0, 66.9, 79.6, 90.1, 84.2]),
            ("CLIPood", [98.9, 68.2, 78.8, 90.8, 84.2]),
            ("CLIPood + GuiDG", [99.3, 69.7, 77.9, 90.1, 84.3]),
        ]), _TABLE8)),
    ("pacs", PublishedDG(
        ["art_painting", "cartoon", "photo", "sketch"], ["A", "C", "P", "S"],
        OrderedDict([
            ("CLIP (zero-shot)", [97.6, 98.9, 100.0, 88.2, 96.2]),
            ("ERM (WF)", [97.8, 99.1, 100.0, 89.9, 96.7]),
            ("ERM (WF) + GuiDG", [98.5, 99.4, 100.0, 92.5, 97.6]),
            ("UEO (WF)", [98.1, 98.9, 100.0, 90.7, 96.9]),
            ("UEO (WF) + GuiDG", [98.9, 99.6, 100.0, 91.8, 97.6]),
            ("CLIPood", [99.0, 99.6, 100.0, 90.7, 97.3]),
            ("CLIPood + GuiDG", [98.3, 99.6, 100.0, 91.1, 97.3]),
        ]), _TABLE8)),
])
