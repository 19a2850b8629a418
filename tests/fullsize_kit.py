"""The full-size config check (tests/test_fullsize_configs.py): every shipped
trainer YAML built at its backbone's real dimensions.

Each ``configs/trainers/<TRAINER>/<name>.yaml`` other than ``toy.yaml`` is a
:class:`Case` (found on disk, so a new YAML is covered without listing it):
the trainer of its folder, a random-weight CLIP of the YAML's
``MODEL.BACKBONE.NAME`` with OpenAI's dimensions (``benchmarks/backbones.py``,
written once per backbone as a float16 state dict), a tiny dataset in the
real on-disk layout of a dataset the config is for, with images at the
config's ``INPUT.SIZE``, and the real ``train.py``: two training steps (one
epoch of two batches), the checkpoint, then the test set in one batch and the
evaluator block.

Everything else is the YAML's: prompt depths and lengths, input size,
transforms, optimizer, precision (a ``PREC`` fp16 / amp config runs as fp32
on the CPU and says so, as on any CPU), test batch size, data-loader workers.
What is cut for the CPU is :data:`CPU_CUTS` (plus the per-trainer keys in
:meth:`Case.opts`); ``MODEL.BACKBONE.NAME`` points at the random-weight file.
"""
import glob
import os
from dataclasses import dataclass

import yaml

from benchmarks.backbones import BACKBONES
from benchmarks.configs import config_from_file
from clipwb.engine import TRAINER_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_GLOB = os.path.join(REPO, "configs", "trainers", "*", "*.yaml")
#: the offline toy-world configs (ToyCLIP, 32 px): checked by the toy-world tests
def is_toy_config(path):
    """A toy-world config (toy.yaml, toy_official.yaml, ...): ToyCLIP, no real size."""
    name = os.path.basename(path)
    return name == "toy.yaml" or name.startswith("toy_")

#: the classes of every tiny dataset
N_CLASSES = 2
#: images per class (and domain): 2 train, 1 val, 1 test in the CoOp layouts
#: (ImageNet: 3 in train/, 1 in val/); pools A and B of 2 and 1 test image in
#: the DomainBed layout (GuiDG's 40/40/20 split)
COOP_IMAGES_PER_CLASS, DOMAINBED_IMAGES_PER_CLASS = 4, 5
#: so the test split holds N_CLASSES images, fewer than any YAML's test batch
TEST_IMAGES = N_CLASSES
#: the largest train batch kept: one step of a ViT-B/16 takes seconds on the CPU
MAX_TRAIN_BATCH = 2
#: one epoch of two steps
STEPS = 2

# Keys overridden for every case, and why (the per-trainer ones: Case.opts):
#   DATALOADER.TRAIN_X.BATCH_SIZE  min(YAML's, 2): CPU time (the YAMLs: 1 to 200)
#   DATASET.NUM_SHOTS              = that batch: 2 classes x K shots = 2 batches
#   OPTIM.MAX_EPOCH                1: the two steps (GPA, warmup and cosine
#                                  schedules are computed for that one epoch)
#   MODEL.BACKBONE.NAME            the random-weight file of the YAML's backbone
#   SEED                           1
CPU_CUTS = ("DATALOADER.TRAIN_X.BATCH_SIZE", "DATASET.NUM_SHOTS", "OPTIM.MAX_EPOCH")

#: GuiDG's domains on the tiny PACS: step 1 trains one expert per source
#: domain (tested on its own domain, as scripts/guidg/dg.sh does), step 2
#: fine-tunes on both sources and tests on the target
DG_SOURCES = ("art_painting", "cartoon")
DG_TARGET = "photo"
#: the step-1 config whose experts step 2 loads (scripts/guidg/dg_common.sh's default)
DEFAULT_EXPERT_CONFIG = "GuiDGExpert/vit_b16_c16_ep31.yaml"
#: ... on a ViT-L/14 step 2 (the experts' contexts have its text width)
LARGE_EXPERT_CONFIG = "GuiDGExpert/vit_l14_c16_ep31.yaml"
DG_TRAINERS = ("GuiDG", "GuiDGExpert")


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


#: trainers the scripts run with another folder's YAML, and that YAML:
#: scripts/zsclip/ (CFG_DIR CoOp, DEFAULT_CFG vit_b16) and the DG baselines
#: alone (TRAINER=CLIPood / ERMWiSEFT / UEOWiSEFT bash scripts/guidg/dg.sh,
#: CFG=vit_b16_<their file>)
SCRIPT_PAIRS = {"ZeroshotCLIP": "CoOp/vit_b16.yaml", "ZeroshotCLIP2": "CoOp/vit_b16.yaml",
                "CLIPood": "GuiDG/vit_b16_clipood.yaml",
                "ERMWiSEFT": "GuiDG/vit_b16_erm_wf.yaml",
                "UEOWiSEFT": "GuiDG/vit_b16_ueo_wf.yaml",
                # the paper's name of MultiModalAdapter, with that folder's configs
                "MMA": "MultiModalAdapter/vit_b16_ep5.yaml"}
ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")
#: fine-tuning trainers (domain-balanced batches, trainers/guidg/finetune.py)
DG_FINETUNE = ("GuiDG", "CLIPood", "ERMWiSEFT", "UEOWiSEFT")


@dataclass(frozen=True)
class Case:
    """One shipped trainer YAML (``path``) and the trainer it runs with
    (``with_trainer``; None: the trainer its folder is named after)."""

    path: str
    with_trainer: str = None

    @property
    def config(self):
        """``<TRAINER>/<name>.yaml``, as under configs/trainers/."""
        return os.path.relpath(self.path, os.path.dirname(os.path.dirname(self.path)))

    @property
    def id(self):
        """The config, and ``@TRAINER`` when another folder's trainer runs it."""
        return self.config + ("@" + self.with_trainer if self.with_trainer else "")

    @property
    def trainer(self):
        return self.with_trainer or os.path.basename(os.path.dirname(self.path))

    @property
    def zero_shot(self):
        """Nothing to train: ``train.py`` evaluates the frozen model."""
        return self.trainer in ZERO_SHOT

    @property
    def backbone(self):
        return ((read_yaml(self.path).get("MODEL") or {}).get("BACKBONE") or {}).get("NAME")

    @property
    def dims(self):
        return BACKBONES[self.backbone]

    @property
    def expert_config(self):
        """GuiDG's step 2: the step-1 config of its backbone whose experts it loads."""
        return LARGE_EXPERT_CONFIG if self.backbone == "ViT-L/14" else DEFAULT_EXPERT_CONFIG

    @property
    def dataset(self):
        """The tiny dataset: PACS for GuiDG's steps (DomainBed layout), ImageNet
        for the cross-dataset configs (trained on ImageNet), else Caltech101
        (the 11 base-to-novel / few-shot datasets share one reader family).
        DePT's configs serve both settings: ImageNet (all classes train its
        probe there; base-to-new would keep one of the two classes)."""
        if self.trainer in DG_TRAINERS + DG_FINETUNE:
            return "PACS"
        if ("cross_datasets" in os.path.basename(self.path)
                or self.trainer.startswith("ExtrasLinearProbe")):
            return "ImageNet"
        return "Caltech101"

    def cfg(self, opts=()):
        """The YAML merged into the defaults as train.py merges it (frozen)."""
        return config_from_file(self.path, self.trainer, opts)

    @property
    def precision_key(self):
        """``TRAINER.<NODE>.PREC`` of the trainer (None: it has none)."""
        node = getattr(TRAINER_REGISTRY.get(self.trainer), "cfg_key", None)
        return None if node is None else "TRAINER.{}.PREC".format(node)

    @property
    def precision(self):
        key = self.precision_key
        if key is None:
            return None
        return self.cfg().TRAINER[key.split(".")[1]].PREC

    @property
    def train_batch(self):
        return min(self.cfg().DATALOADER.TRAIN_X.BATCH_SIZE, MAX_TRAIN_BATCH)

    @property
    def input_size(self):
        return tuple(self.cfg().INPUT.SIZE)

    def opts(self, clip_path):
        """The trailing KEY VALUE pairs of the case's ``train.py`` runs (see
        :data:`CPU_CUTS`); the domains and pools are the scripts' (dg.sh)."""
        batch = self.train_batch
        opts = ["MODEL.BACKBONE.NAME", clip_path, "DATALOADER.TRAIN_X.BATCH_SIZE", batch,
                "DATASET.NUM_SHOTS", batch, "OPTIM.MAX_EPOCH", 1]
        if self.trainer in DG_FINETUNE:
            # batches hold BATCH_PER_DOMAIN images of each source domain, and
            # an epoch is ITERS_PER_EPOCH of them (defaults: 16 x 2, 400)
            node = "TRAINER.{}.".format(TRAINER_REGISTRY.get(self.trainer).cfg_key)
            opts += [node + "BATCH_PER_DOMAIN", batch // len(DG_SOURCES),
                     node + "ITERS_PER_EPOCH", STEPS]
        return opts


#: the ViT-L/14 configs and the shipped config each copies (its "twin": the
#: ViT-B/16 config of the same setting; ProGrad ships RN50 recipes only):
#: every method's base-to-novel and cross-dataset configs (the scripts'
#: defaults), and GuiDG's domain-generalization steps
LARGE_TWINS = {
    "CoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1",),
    "CoOp": ("vit_b16_ctxv1", "vit_b16_ep50_ctxv1"),
    "DiSa": ("vit_b16_c2_ep20_batch4_4+4ctx", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"),
    "ExtrasLinearProbeCoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1",),
    "ExtrasLinearProbeCoOp": ("vit_b16_ep10_bs4_lr35",),
    "ExtrasLinearProbeKgCoOp": ("vit_b16_ep10_ctxv1_bs4_lr35",),
    "ExtrasLinearProbeMaPLe": ("vit_b16_c2_ep10_batch4_2ctx",),
    "ExtrasLinearProbePromptSRC": ("vit_b16_c2_ep20_batch4_4+4ctx",),
    "GuiDG": ("vit_b16_clipood", "vit_b16_clipood_official", "vit_b16_erm_wf",
              "vit_b16_erm_wf_official", "vit_b16_ueo_wf", "vit_b16_ueo_wf_official"),
    "GuiDGExpert": ("vit_b16_c16_ep31", "vit_b16_c16_ep31_official"),
    "ISP": ("vit_b16_c2_ep5_batch4_2+2ctx", "vit_b16_c2_ep5_batch4_2+2ctx_cross_datasets"),
    "IVLP": ("vit_b16_c2_ep20_batch4_4+4ctx",),
    "KgCoOp": ("vit_b16_ep100_ctxv1",),
    "MMRL": ("vit_b16", "vit_b16_cross_datasets", "vit_b16_imagenet"),
    "MaPLe": ("vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"),
    "MultiModalAdapter": ("vit_b16_ep5", "vit_b16_ep5_imnet"),
    "ProGrad": ("rn50_ep100", "rn50_ep50"),
    "PromptSRC": ("vit_b16_c2_ep20_batch4_4+4ctx", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"),
    "TCP": ("vit_b16_ep100_ctxv1",),
}
#: the backbone lines of the twins, and the ViT-L/14 config's
TWIN_BACKBONES = ('NAME: "ViT-B/16"', 'NAME: "RN50"')
LARGE_BACKBONE, LARGE_SIZE = 'NAME: "ViT-L/14"', "SIZE: (224, 224)"


def large_name(twin):
    """``vit_l14[_<setting>]`` of a twin ``vit_b16[_<setting>]`` / ``rn50_<setting>``."""
    for prefix in ("vit_b16", "rn50"):
        if twin == prefix or twin.startswith(prefix + "_"):
            return "vit_l14" + twin[len(prefix):]
    raise ValueError("{}: not a ViT-B/16 or RN50 config name".format(twin))


def large_config_text(folder, twin):
    """The text of the ViT-L/14 config of ``configs/trainers/<folder>/<twin>.yaml``:
    a header, then the twin's text with only ``MODEL.BACKBONE.NAME`` changed
    (every shipped twin's ``INPUT.SIZE`` is already ViT-L/14's 224)."""
    with open(os.path.join(REPO, "configs", "trainers", folder, twin + ".yaml")) as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    backbone = [i for i, line in enumerate(lines) if line.strip() in TWIN_BACKBONES]
    sizes = [line for line in lines if line.strip().startswith("SIZE:")]
    assert len(backbone) == 1 and [s.strip() for s in sizes] == [LARGE_SIZE], (folder, twin)
    i = backbone[0]
    lines[i] = lines[i][:len(lines[i]) - len(lines[i].lstrip())] + LARGE_BACKBONE + "\n"
    header = ("# ViT-L/14: {twin}.yaml on OpenAI's ViT-L/14 (text 768 wide, image 1024 wide,\n"
              "# 24 image blocks); every other value is {twin}.yaml's (a test keeps this file\n"
              "# equal to it but for MODEL.BACKBONE.NAME). {twin}.yaml reads:\n").format(twin=twin)
    return header + "".join(lines)


def large_configs():
    """``(folder, ViT-L/14 name, twin name)`` of every ViT-L/14 config."""
    return [(folder, large_name(twin), twin)
            for folder, twins in sorted(LARGE_TWINS.items()) for twin in twins]


def find_cases():
    """Every shipped trainer YAML but the toy ones, sorted, with its folder's
    trainer; then the :data:`SCRIPT_PAIRS`."""
    paths = sorted(glob.glob(CONFIG_GLOB))
    cases = [Case(p) for p in paths if not is_toy_config(p)]
    root = os.path.dirname(os.path.dirname(CONFIG_GLOB))
    return cases + [Case(os.path.join(root, config), trainer)
                    for trainer, config in SCRIPT_PAIRS.items()]


def case_by_id(cases, case_id):
    return next(c for c in cases if c.id == case_id)
