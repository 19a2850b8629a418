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

Per dataset: CLIP, CoOp and CoCoOp from CoCoOp's Table 1 (the official CoOp
repository names it as the base-to-new experiment), MaPLe and PromptSRC from
their papers' per-dataset base-to-novel tables. The papers themselves could
not be read here; each row is the papers' numbers as two or more independent
later papers quote them, digit for digit (TransAgent, NeurIPS 2024, Table 1:
CLIP, CoOp, CoCoOp, PromptSRC; an on-policy distillation paper, OnPoKD,
Table 1: all five; a VACSR paper, Table 9: CLIP, CoCoOp, MaPLe; a UPrompt
paper, Table 1: PromptSRC); besides the HM check, each method's 11 Base and
Novel values average to its published 11-dataset average within 0.01 (the
published average HM is the HM of those means, not the mean of the HMs).
IVLP has only its average: no per-dataset IVLP row could be found. KgCoOp,
ProGrad and TCP have only their averages too: their papers' per-dataset
tables could not be read here, their official repositories (README files
of every version, scripts, figures) carry no per-dataset numbers, and no
later paper or README that could be read reprints their rows with Base and
Novel. (DePT's README table has a KgCoOp row per dataset, but of DePT's own
re-run: its average, 80.93 / 73.88, is not KgCoOp's published 80.73 / 73.60;
it is not recorded.) MMRL, MMA and DePT on PromptSRC have their averages
only, each confirmed digit for digit by a later README's base-to-novel table
(the zhengli97/Awesome-Prompt-Adapter-Learning-for-VLMs list, Table 1): their
papers' per-dataset tables could not be read here, their official READMEs
carry no numbers (MMRL), the average only (MMA) or images (DePT), and no
later paper or README that could be read reprints a full per-dataset row of
theirs. (A
later Jittor port's README has a "Paper" column for MMRL, but its 11 rows
average to 85.71 / 76.28, not the published 85.68 / 77.16, and its EuroSAT
row, 96.10 / 72.33, is not the 95.60 / 80.17 / 87.21 that the official
repository's issue #14 quotes as the paper's: it is not recorded.) DiSa
and ISP have no published row (their result tables could not be read).
"""
from collections import OrderedDict, namedtuple

from clipwb.errors import UserInputError
from clipwb.results.runs import BASE2NEW_DATASETS

PublishedResult = namedtuple("PublishedResult", "base novel hm source")

#: the backbone of every published base-to-novel number here: a run on
#: another backbone (``vit_l14_*`` configs) is not compared with them
PUBLISHED_BACKBONE = "ViT-B/16"

PUBLISHED_BASE2NEW = OrderedDict([
    ("CLIP", PublishedResult(69.34, 74.22, 71.70, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoOp", PublishedResult(82.69, 63.22, 71.66, "Zhou et al., CoCoOp, CVPR 2022")),
    ("CoCoOp", PublishedResult(80.47, 71.69, 75.83, "Zhou et al., CoCoOp, CVPR 2022")),
    ("MaPLe", PublishedResult(82.28, 75.14, 78.55, "Khattak et al., MaPLe, CVPR 2023")),
    ("IVLP", PublishedResult(84.21, 71.79, 77.51, "Khattak et al., PromptSRC, ICCV 2023")),
    ("PromptSRC", PublishedResult(84.26, 76.10, 79.97, "Khattak et al., PromptSRC, ICCV 2023")),
    # KgCoOp: its average as the official repository's README table gives it
    # (the paper's per-dataset table could not be read here)
    ("KgCoOp", PublishedResult(80.73, 73.60, 77.00,
                               "Yao et al., KgCoOp, CVPR 2023 (official repository README)")),
    # ProGrad's paper could not be read here: its average as two later works
    # quote it, digit for digit (the TAP, ICLR 2025, and CLIP-SVD, 2025,
    # result tables); no per-dataset row was found
    ("ProGrad", PublishedResult(82.48, 70.75, 76.16,
                                "Zhu et al., ProGrad, ICCV 2023 (as quoted by Ding et al., "
                                "TAP, ICLR 2025 and Koleilat et al., CLIP-SVD, 2025)")),
    # TCP's paper could not be read here: its 11-dataset average as a later
    # work quotes it (the CLIP-SVD README's base-to-novel table); no
    # per-dataset row was found
    ("TCP", PublishedResult(84.13, 75.36, 79.51,
                            "Yao et al., TCP, CVPR 2024 (as quoted by Koleilat et al., "
                            "CLIP-SVD, 2025)")),
    # MMRL: the 11-dataset average of its paper's base-to-novel table as a
    # later README quotes it, digit for digit (the Awesome list's Table 1;
    # the paper's table could not be read here, and the official README
    # carries no numbers); no per-dataset row was found
    ("MMRL", PublishedResult(85.68, 77.16, 81.20,
                             "Guo and Gu, MMRL, CVPR 2025 (base-to-novel average, as quoted "
                             "by the zhengli97/Awesome-Prompt-Adapter-Learning-for-VLMs README, "
                             "Table 1)")),
    # MMA: the 11-dataset average of the official repository's README table,
    # the same digits in the Awesome list's Table 1 and the HiCroPL (ICCV
    # 2025) README (the paper's per-dataset table could not be read here:
    # later papers quote a few per-dataset HMs but no full Base / Novel rows,
    # so none is recorded). Our trainer is MultiModalAdapter
    # (aggregate.PUBLISHED_NAME_OF)
    ("MMA", PublishedResult(83.20, 76.80, 79.87,
                            "Yang et al., MMA, CVPR 2024 (official repository README)")),
    # DePT on PromptSRC: the 11-dataset average as a later README quotes it,
    # digit for digit (the Awesome list's Table 1, row DePT+PromptSRC; the
    # paper's tables are images in the official README and could not be read
    # here; its other pairings and the per-dataset Base / Novel rows are not
    # recorded)
    ("ExtrasLinearProbePromptSRC", PublishedResult(
        85.19, 76.17, 80.43, "Zhang et al., DePT, CVPR 2024 (PromptSRC + DePT, "
        "base-to-novel average, as quoted by the "
        "zhengli97/Awesome-Prompt-Adapter-Learning-for-VLMs README, Table 1)")),
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


_COCOOP_T1 = "Zhou et al., CoCoOp, CVPR 2022, Table 1"
_MAPLE = "Khattak et al., MaPLe, CVPR 2023, per-dataset base-to-novel table"
_PROMPTSRC = "Khattak et al., PromptSRC, ICCV 2023, per-dataset base-to-novel table"

# method -> (source, (Base, Novel, HM) per dataset in BASE2NEW_DATASETS' order:
# imagenet, caltech101, oxford_pets, stanford_cars, oxford_flowers, food101,
# fgvc_aircraft, sun397, dtd, eurosat, ucf101)
_PER_DATASET_ROWS = OrderedDict([
    ("CLIP", (_COCOOP_T1, [
        (72.43, 68.14, 70.22), (96.84, 94.00, 95.40), (91.17, 97.26, 94.12),
        (63.37, 74.89, 68.65), (72.08, 77.80, 74.83), (90.10, 91.22, 90.66),
        (27.19, 36.29, 31.09), (69.36, 75.35, 72.23), (53.24, 59.90, 56.37),
        (56.48, 64.05, 60.03), (70.53, 77.50, 73.85)])),
    ("CoOp", (_COCOOP_T1, [
        (76.47, 67.88, 71.92), (98.00, 89.81, 93.73), (93.67, 95.29, 94.47),
        (78.12, 60.40, 68.13), (97.60, 59.67, 74.06), (88.33, 82.26, 85.19),
        (40.44, 22.30, 28.75), (80.60, 65.89, 72.51), (79.44, 41.18, 54.24),
        (92.19, 54.74, 68.69), (84.69, 56.05, 67.46)])),
    ("CoCoOp", (_COCOOP_T1, [
        (75.98, 70.43, 73.10), (97.96, 93.81, 95.84), (95.20, 97.69, 96.43),
        (70.49, 73.59, 72.01), (94.87, 71.75, 81.71), (90.70, 91.29, 90.99),
        (33.41, 23.71, 27.74), (79.74, 76.86, 78.27), (77.01, 56.00, 64.85),
        (87.49, 60.04, 71.21), (82.33, 73.45, 77.64)])),
    ("MaPLe", (_MAPLE, [
        (76.66, 70.54, 73.47), (97.74, 94.36, 96.02), (95.43, 97.76, 96.58),
        (72.94, 74.00, 73.47), (95.92, 72.46, 82.56), (90.71, 92.05, 91.38),
        (37.44, 35.61, 36.50), (80.82, 78.70, 79.75), (80.36, 59.18, 68.16),
        (94.07, 73.23, 82.35), (83.00, 78.66, 80.77)])),
    ("PromptSRC", (_PROMPTSRC, [
        (77.60, 70.73, 74.01), (98.10, 94.03, 96.02), (95.33, 97.30, 96.30),
        (78.27, 74.97, 76.58), (98.07, 76.50, 85.95), (90.67, 91.53, 91.10),
        (42.73, 37.87, 40.15), (82.67, 78.47, 80.52), (83.37, 62.97, 71.75),
        (92.90, 73.90, 82.32), (87.10, 78.80, 82.74)])),
])
for _name, (_source, _rows) in _PER_DATASET_ROWS.items():
    for _dataset, (_base, _novel, _hm) in zip(BASE2NEW_DATASETS, _rows):
        add_published(_name, _base, _novel, _hm, _source, dataset=_dataset)
del _name, _source, _rows, _dataset, _base, _novel, _hm


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
