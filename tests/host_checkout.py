"""Fixture checkouts shaped like CoOp, MaPLe and PromptSRC (for the plugin tests).

:func:`write_host` writes, under a folder of the test's:

- ``site/dassl/``: a package laid out like Dassl's (``dassl.engine``,
  ``dassl.config``, ``dassl.data``, ``dassl.data.datasets``,
  ``dassl.optim``, ``dassl.utils``, ...) whose names are the built-in
  engine's: real Dassl stands in for itself where it is installed, CI has
  none. ``site`` goes on ``PYTHONPATH`` of the host's runs;
- ``<kind>/``: the checkout, with the traits of the real ones: its own
  ``trainers/`` package registering CoOp, CoCoOp, ZeroshotCLIP (and IVLP,
  MaPLe, PromptSRC for the MaPLe / PromptSRC kinds) with a small working
  CoOp-like trainer; its own ``datasets/`` registering the 15 CoOp datasets
  (a working Caltech101 reader, the others declared); a ``clip/`` package
  (CoOp: OpenAI's files; MaPLe / PromptSRC: a fork whose
  ``build_model(state_dict, design_details)`` needs the second argument and
  whose prompted designs build blocks whose ``forward`` takes the prompts);
  a CoOp-style ``train.py`` (``extend_cfg`` inside ``setup_cfg``, Dassl's
  ``build_trainer``; on request its trainer imports as one parenthesised or
  backslash-continued statement, or CRLF line endings); scripts with a hard-coded ``DATA`` (MaPLe's named
  ``*_maple.sh``); ``configs/``.
"""
import os
import shutil
import textwrap

import clip as openai_clip

HOST_DATA = "/path/to/dataset/folder"

_DASSL_MODULES = {
    "__init__.py": '"""Stand-in for Dassl.pytorch in the plugin tests (the built-in engine\'s names)."""\n'
                   '__version__ = "0.6.3"\n'
                   'CLIPWB_BUILTIN_VIEW = True  # clipwb.engine: this package is the built-in engine\n',
    "config/__init__.py": "from clipwb.engine.builtin import CfgNode, clean_cfg, get_cfg_default  # noqa\n",
    "engine/__init__.py": "from clipwb.engine.builtin import (TRAINER_REGISTRY, SimpleNet, SimpleTrainer,  # noqa\n"
                          "                                   TrainerBase, TrainerX, build_trainer)\n",
    "data/__init__.py": "from clipwb.engine.builtin import DataManager, DatasetWrapper  # noqa\n",
    "data/data_manager.py": "from clipwb.engine.builtin import (DataManager, DatasetWrapper,  # noqa\n"
                            "                                   build_data_loader, read_image)\n",
    "data/datasets/__init__.py": "from clipwb.engine.builtin import (DATASET_REGISTRY, DatasetBase, Datum,  # noqa\n"
                                 "                                   build_dataset)\n",
    "data/samplers/__init__.py": "from clipwb.engine.builtin import build_sampler  # noqa\n",
    "data/transforms/__init__.py": "from clipwb.engine.builtin import INTERPOLATION_MODES, build_transform  # noqa\n",
    "optim/__init__.py": "from clipwb.engine.builtin import build_lr_scheduler, build_optimizer  # noqa\n",
    "evaluation/__init__.py": "from clipwb.engine.builtin import (EVALUATOR_REGISTRY, Classification,  # noqa\n"
                              "                                   EvaluatorBase, build_evaluator)\n",
    "metrics/__init__.py": "from clipwb.engine.builtin import compute_accuracy  # noqa\n",
    "utils/__init__.py": "from clipwb.engine.builtin import (AverageMeter, MetricMeter, Registry,  # noqa\n"
                         "    check_isfile, collect_env_info, count_num_param, listdir_nohidden,\n"
                         "    load_checkpoint, load_pretrained_weights, mkdir_if_missing, read_image,\n"
                         "    read_json, resume_from_checkpoint, save_checkpoint, set_random_seed,\n"
                         "    setup_logger, write_json)\n",
    "utils/torchtools.py": "from clipwb.engine.builtin import (load_checkpoint, load_pretrained_weights,  # noqa\n"
                           "                                   resume_from_checkpoint, save_checkpoint)\n",
}

# The fork's additions to OpenAI's clip/model.py (MaPLe / PromptSRC shape).
_FORK_MODEL_TAIL = '''

class ResidualAttentionBlock_IVLP(ResidualAttentionBlock):
    """A prompted block of the fork: forward takes the prompts with the tokens
    (MaPLe's ``[x, prompts, counter]`` list) and fails on bare tokens."""

    def forward(self, inputs):
        x, prompts, counter = inputs
        return [super().forward(x), prompts, counter + 1]


def build_model(state_dict: dict, design_details):
    """The fork's build_model: the design decides the blocks (CoOp: plain ones)."""
    for key in ("trainer", "vision_depth", "language_depth", "vision_ctx", "language_ctx"):
        design_details[key]
    model = _openai_build_model(state_dict)
    if design_details["trainer"] in ("IVLP", "MaPLe", "VPT"):
        for block in list(model.transformer.resblocks) + list(model.visual.transformer.resblocks):
            block.__class__ = ResidualAttentionBlock_IVLP
    return model
'''

_HOST_COOP = '''"""The checkout's CoOp (a small CoOp-like trainer: a learnable shift of the
class text features of a frozen CLIP loaded with the checkout's clip)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip import clip
from clip.model import build_model
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer


def load_clip_to_cpu(cfg):
    state_dict = torch.load(cfg.MODEL.BACKBONE.NAME, map_location="cpu")
    {build}
    return model.float().eval()


class ShiftPrompt(nn.Module):
    def __init__(self, text_features):
        super().__init__()
        self.register_buffer("text", text_features)
        self.ctx = nn.Parameter(torch.zeros(text_features.shape[-1]))

    def forward(self, image_features):
        text = F.normalize(self.text + self.ctx, dim=-1)
        return 50.0 * image_features @ text.t()


@TRAINER_REGISTRY.register()
class CoOp(TrainerX):
    def build_model(self):
        self.clip_model = load_clip_to_cpu(self.cfg).to(self.device)
        for param in self.clip_model.parameters():
            param.requires_grad_(False)
        names = ["a photo of a {{}}.".format(c) for c in self.dm.dataset.classnames]
        with torch.no_grad():
            text = self.clip_model.encode_text(clip.tokenize(names).to(self.device)).float()
        self.prompt = ShiftPrompt(F.normalize(text, dim=-1)).to(self.device)
        self.optim = build_optimizer(self.prompt, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("prompt_learner", self.prompt, self.optim, self.sched)

    def model_inference(self, input):
        with torch.no_grad():
            features = F.normalize(self.clip_model.encode_image(input).float(), dim=-1)
        return self.prompt(features)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model_inference(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        summary = {{"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)
'''

_HOST_CALTECH = '''"""The checkout's Caltech101 reader (CoOp's split file and few-shot protocol)."""
import math
import os

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.utils import read_json


def subsample_classes(subsample, *splits):
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:] if subsample == "new" else labels
    relabel = {label: i for i, label in enumerate(selected)}
    return [[Datum(impath=x.impath, label=relabel[x.label], classname=x.classname)
             for x in split if x.label in relabel] for split in splits]


@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    dataset_dir = "caltech-101"

    def __init__(self, cfg):
        print("Reading Caltech101 with the checkout's own reader")
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(root, self.dataset_dir)
        image_dir = os.path.join(self.dataset_dir, "101_ObjectCategories")
        split = read_json(os.path.join(self.dataset_dir, "split_zhou_Caltech101.json"))

        def items(key):
            return [Datum(impath=os.path.join(image_dir, path), label=int(label), classname=name)
                    for path, label, name in split[key]]

        train, val, test = items("train"), items("val"), items("test")
        if cfg.DATASET.NUM_SHOTS >= 1:
            train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
            val = self.generate_fewshot_dataset(val, num_shots=min(cfg.DATASET.NUM_SHOTS, 4))
        train, val, test = subsample_classes(cfg.DATASET.SUBSAMPLE_CLASSES, train, val, test)
        super().__init__(train_x=train, val=val, test=test)
'''

_HOST_OTHER_DATASETS = '''"""The checkout's other CoOp readers (declared only: the tests read Caltech101)."""
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase


def _reader(name):
    def __init__(self, cfg):
        raise FileNotFoundError(name + " is not written in this test checkout")
    return type(name, (DatasetBase,), {"__init__": __init__})


for _name in ("ImageNet", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
              "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101",
              "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"):
    DATASET_REGISTRY.register(_reader(_name))
'''

_HOST_TRAIN_PY = '''import argparse
import torch

from dassl.utils import setup_logger, set_random_seed, collect_env_info
from dassl.config import get_cfg_default
from dassl.engine import build_trainer

# custom
import datasets.caltech101
import datasets.others

{trainer_imports}


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer


def extend_cfg(cfg):
    from yacs.config import CfgNode as CN

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"
{extra_keys}
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)

    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup_cfg(args)
    if cfg.SEED >= 0:
        print("Setting fixed seed: {{}}".format(cfg.SEED))
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    print("** System info **\\n{{}}\\n".format(collect_env_info()))
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=str, default="")
    parser.add_argument("--output-dir", type=str, default="")
    parser.add_argument("--resume", type=str, default="")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--source-domains", type=str, nargs="+")
    parser.add_argument("--target-domains", type=str, nargs="+")
    parser.add_argument("--config-file", type=str, default="")
    parser.add_argument("--dataset-config-file", type=str, default="")
    parser.add_argument("--trainer", type=str, default="")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--model-dir", type=str, default="")
    parser.add_argument("--load-epoch", type=int)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER)
    main(parser.parse_args())
'''

_HOST_SCRIPT = '''#!/bin/bash

# custom config
DATA="{data}"
TRAINER={trainer}

DATASET=$1
SEED=$2

CFG=tiny
SHOTS=16

DIR=output/base2new/train_base/${{DATASET}}/shots_${{SHOTS}}/${{TRAINER}}/${{CFG}}/seed${{SEED}}
python train.py --root ${{DATA}} --seed ${{SEED}} --trainer ${{TRAINER}} \\
    --dataset-config-file configs/datasets/${{DATASET}}.yaml \\
    --config-file configs/trainers/${{TRAINER}}/${{CFG}}.yaml \\
    --output-dir ${{DIR}} DATASET.NUM_SHOTS ${{SHOTS}} DATASET.SUBSAMPLE_CLASSES base
'''

# The host's tiny CoOp config: the tiny test CLIP at 32 px, a few steps.
HOST_COOP_YAML = '''DATALOADER:
  TRAIN_X:
    BATCH_SIZE: 4
  TEST:
    BATCH_SIZE: 16
  NUM_WORKERS: 0
INPUT:
  SIZE: (32, 32)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_flip", "normalize"]
OPTIM:
  NAME: "sgd"
  LR: 0.5
  MAX_EPOCH: 2
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 0.01
TRAIN:
  PRINT_FREQ: 1
'''

KINDS = {
    "coop": dict(fork=False, trainers=["coop", "cocoop", "zsclip"]),
    "maple": dict(fork=True, trainers=["coop", "cocoop", "zsclip", "maple", "independentVL", "vpt"]),
    "promptsrc": dict(fork=True, trainers=["coop", "cocoop", "zsclip", "maple", "independentVL",
                                           "promptsrc"]),
}

# script folders and names of each kind (MaPLe names its scripts after the method)
_SCRIPTS = {
    "coop": [("cocoop", "base2new_train.sh")],
    "maple": [("cocoop", "base2new_train.sh"), ("maple", "base2new_train_maple.sh"),
              ("independent-vlp", "base2new_train_ivlp.sh")],
    "promptsrc": [("cocoop", "base2new_train.sh"), ("maple", "base2new_train_maple.sh"),
                  ("promptsrc", "base2new_train.sh")],
}

_ALIASES = {"cocoop": ["CoCoOp"], "zsclip": ["ZeroshotCLIP", "ZeroshotCLIP2"], "maple": ["MaPLe"],
            "independentVL": ["IVLP"], "vpt": ["VPT"], "promptsrc": ["PromptSRC"]}

_EXTRA_KEYS = {
    "maple": ["MAPLE", "N_CTX = 2", "CTX_INIT = \"a photo of a\"", "PREC = \"fp16\"",
              "PROMPT_DEPTH = 9"],
    "independentVL": ["IVLP", "N_CTX_VISION = 2", "N_CTX_TEXT = 2", "CTX_INIT = \"a photo of a\"",
                      "PREC = \"fp16\"", "PROMPT_DEPTH_VISION = 9", "PROMPT_DEPTH_TEXT = 9"],
    "promptsrc": ["PROMPTSRC", "N_CTX_VISION = 4", "N_CTX_TEXT = 4", "PREC = \"fp16\"",
                  "TEXT_LOSS_WEIGHT = 25"],
}


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text) if text.startswith("\n") else text)


def write_dassl_standin(site, builtin_view=True):
    """Write the Dassl-shaped package under ``site``; return ``site``.

    ``builtin_view=False``: a package that does not say it is the built-in
    engine, with a trainer registry of its own, as real Dassl is to the
    built-in engine (what ``DASSL_BACKEND=builtin`` cannot serve).
    """
    for rel, text in _DASSL_MODULES.items():
        if not builtin_view and rel == "__init__.py":
            text = '"""Stand-in for real Dassl: not the built-in engine."""\n__version__ = "0.6.3"\n'
        elif not builtin_view and rel == "engine/__init__.py":
            text += "from clipwb.engine.builtin import Registry  # noqa\n" \
                    "TRAINER_REGISTRY = Registry(\"TRAINER\")  # its own, as real Dassl's\n"
        _write(os.path.join(site, "dassl", rel), text)
    return site


def _write_clip(root, fork):
    src = os.path.dirname(openai_clip.__file__)
    dst = os.path.join(root, "clip")
    os.makedirs(dst)
    for name in ("__init__.py", "clip.py", "simple_tokenizer.py", "bpe_simple_vocab_16e6.txt.gz"):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    with open(os.path.join(src, "model.py")) as f:
        model = f.read()
    if fork:
        assert "def build_model(state_dict: dict):" in model
        model = model.replace("def build_model(state_dict: dict):",
                              "def _openai_build_model(state_dict: dict):") + _FORK_MODEL_TAIL
    _write(os.path.join(dst, "model.py"), model)


# How train.py imports the checkout's trainers: one line each (the real
# checkouts), one parenthesised statement, or one backslash-continued statement.
IMPORT_STYLES = ("lines", "parenthesised", "backslash")


def _trainer_imports(modules, style):
    if style == "parenthesised":
        return "from trainers import (\n" + "".join("    {},\n".format(m) for m in modules) + ")"
    if style == "backslash":
        return "import " + ", \\\n    ".join("trainers." + m for m in modules)
    return "\n".join("import trainers.{}".format(m) for m in modules)


def write_host(folder, kind, imports="lines", newline="\n"):
    """Write a ``kind`` checkout (coop, maple or promptsrc) under ``folder``;
    return its root. ``imports`` is one of :data:`IMPORT_STYLES`; ``newline``
    the line ending of its ``train.py`` (``"\\r\\n"``: a Windows-edited one)."""
    spec = KINDS[kind]
    root = os.path.join(folder, kind)
    _write_clip(root, spec["fork"])
    if spec["fork"]:
        build = ('design = {"trainer": "CoOp", "vision_depth": 0, "language_depth": 0,\n'
                 '              "vision_ctx": 0, "language_ctx": 0}\n'
                 '    model = build_model(state_dict, design)')
    else:
        build = "model = build_model(state_dict)"
    _write(os.path.join(root, "trainers", "__init__.py"), "")
    _write(os.path.join(root, "trainers", "coop.py"), _HOST_COOP.format(build=build))
    for module in spec["trainers"][1:]:
        lines = ["from dassl.engine import TRAINER_REGISTRY", "", "from .coop import CoOp", ""]
        for name in _ALIASES[module]:
            lines += ["", "@TRAINER_REGISTRY.register()", "class {}(CoOp):".format(name),
                      '    """The checkout\'s {} (stands in for it)."""'.format(name), ""]
        _write(os.path.join(root, "trainers", module + ".py"), "\n".join(lines))
    _write(os.path.join(root, "datasets", "__init__.py"), "")
    _write(os.path.join(root, "datasets", "caltech101.py"), _HOST_CALTECH)
    _write(os.path.join(root, "datasets", "others.py"), _HOST_OTHER_DATASETS)
    extra = []
    for module in spec["trainers"]:
        if module in _EXTRA_KEYS:
            node, *keys = _EXTRA_KEYS[module]
            extra.append("    cfg.TRAINER.{} = CN()".format(node))
            extra += ["    cfg.TRAINER.{}.{}".format(node, key) for key in keys]
    text = _HOST_TRAIN_PY.format(trainer_imports=_trainer_imports(spec["trainers"], imports),
                                 extra_keys="\n".join(extra))
    with open(os.path.join(root, "train.py"), "w", newline=newline) as f:
        f.write(text)
    _write(os.path.join(root, "configs", "datasets", "caltech101.yaml"),
           'DATASET:\n  NAME: "Caltech101"\n')
    _write(os.path.join(root, "configs", "trainers", "CoOp", "tiny.yaml"), HOST_COOP_YAML)
    for folder_name, name in _SCRIPTS[kind]:
        _write(os.path.join(root, "scripts", folder_name, name),
               _HOST_SCRIPT.format(data=HOST_DATA, trainer="CoOp"))
    return root
