"""Build each trainer in-process on the synthetic dataset and measure it.

Per trainer (its shipped config, batch size as configured):

- train step: ``trainer.forward_backward(batch)`` (forward, backward,
  optimizer update) on a random batch already on the device, fastest of
  ``steps`` calls after ``warmup`` calls;
- evaluation: ``trainer.model_inference`` on random test batches under
  ``torch.no_grad()`` and the text-feature cache of a real evaluation
  (image-independent text features encoded on the first batch, reused after):
  steady-state images/s from the fastest batch, and the one-off text
  encoding of an evaluation as first batch minus fastest batch;
- working memory (peak over the resident model) of the warm-up training
  steps and of the first evaluation, and the resident model size.

All trainers are built first and the timed calls go round-robin, so that a
load change on a shared machine slows every trainer alike and the ratios
stay meaningful. Run-level work (frozen text features, DiSa's prototypes)
happens at build time, before the timed steps, as in a real run.
"""
import contextlib
import gc
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional

import torch

from clipwb.engine import build_trainer, save_checkpoint
from clipwb.errors import ConfigError
from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.precision import PRECISIONS
from clipwb.trainers.kit.prompted_clip import text_feature_cache

from . import synthetic
from .backbones import BACKBONES, backbone_checkpoint
from .configs import (DG_TRAINERS, TRAINER_CONFIGS, check_trainer_names, precision_key,
                      registered_name, trainer_cfg)
from .measure import PeakMemory, timed


@dataclass
class BenchSettings:
    """What to run; ``None`` fields take the device's default."""

    device: str = "cpu"
    backbone: str = "small"
    prec: Optional[str] = None  # None: each config's PREC
    steps: int = 7
    warmup: int = 2
    eval_batches: int = 5
    n_classes: Optional[int] = None  # 50 on CPU, 100 on CUDA
    test_batch: Optional[int] = None  # 32 on CPU, 100 on CUDA
    seed: int = 0
    workdir: Optional[str] = None  # None: a temporary folder, removed at the end
    threads: Optional[int] = None  # CPU threads of torch (None: 1 on CPU)
    opts: tuple = ()  # trailing KEY VALUE pairs applied to every trainer's config
    verbose: bool = False

    def resolved(self):
        cuda = self.device == "cuda"
        if self.device not in ("cpu", "cuda"):
            raise ConfigError("--device {!r}: use cpu or cuda.".format(self.device))
        if cuda and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu.")
        if self.prec is not None and self.prec not in PRECISIONS:
            raise ConfigError("--prec {!r}: use one of {}.".format(self.prec,
                                                                   ", ".join(PRECISIONS)))
        for key in ("steps", "eval_batches"):
            if getattr(self, key) < 1:
                raise ConfigError("--{} must be >= 1, got {}.".format(
                    key.replace("_", "-"), getattr(self, key)))
        out = BenchSettings(**self.__dict__)
        out.n_classes = self.n_classes or (100 if cuda else 50)
        out.test_batch = self.test_batch or (100 if cuda else 32)
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be >= 1, got {}.".format(self.threads))
        out.threads = self.threads or (torch.get_num_threads() if cuda else 1)
        return out


@dataclass
class TrainerResult:
    """Measurements of one trainer (seconds, images/s, MiB)."""

    trainer: str
    config: str
    precision: str
    batch_size: int
    step_s: Optional[float]  # None: nothing to train (zero-shot)
    eval_images_per_s: float
    text_once_s: float
    train_mem_mib: Optional[float]  # working memory of the training steps
    eval_mem_mib: float  # working memory of an evaluation
    model_mib: float  # parameters and buffers held by the trainer


class Workbench:
    """Backbone file, synthetic dataset and GuiDG experts in one folder."""

    def __init__(self, settings):
        self.settings = settings.resolved()
        self._tmp = None
        root = self.settings.workdir
        if root is None:
            root = self._tmp = tempfile.mkdtemp(prefix="clip_bench_")
        os.makedirs(root, exist_ok=True)
        self.root = root
        self._threads = torch.get_num_threads()
        torch.set_num_threads(self.settings.threads)
        s = self.settings
        self.clip_path = backbone_checkpoint(s.backbone, root, seed=s.seed)
        self.resolution, self.text_width = self._backbone_dims()
        self.data_root = synthetic.write_synthetic_dataset(
            os.path.join(root, "data"), s.n_classes, self.resolution, seed=s.seed)
        self.expert_dir = None

    def _backbone_dims(self):
        name = self.settings.backbone
        if name in BACKBONES:
            args = BACKBONES[name]
            return args["image_resolution"], args["transformer_width"]
        clip_model = load_clip(self.clip_path)
        return int(clip_model.visual.input_resolution), clip_model.ln_final.weight.shape[0]

    def close(self):
        torch.set_num_threads(self._threads)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- building -------------------------------------------------------------
    def experts(self, n_ctx):
        """GuiDG's step-1 experts: a random CoOp context per source domain."""
        if self.expert_dir is None:
            self.expert_dir = os.path.join(self.root, "experts", "expert_{domain}")
            gen = torch.Generator().manual_seed(self.settings.seed)
            for domain in synthetic.DOMAINS:
                ctx = 0.02 * torch.randn(n_ctx, self.text_width, generator=gen)
                save_checkpoint({"state_dict": {"ctx": ctx}, "epoch": 1, "optimizer": None,
                                 "scheduler": None},
                                os.path.join(self.expert_dir.format(domain=domain),
                                             "prompt_learner"),
                                is_best=False, model_name="model-best.pth.tar")
        return self.expert_dir

    def opts(self, name):
        s = self.settings
        opts = ["DATASET.NAME", synthetic.DATASET_NAME, "DATASET.ROOT", self.data_root,
                "OUTPUT_DIR", os.path.join(self.root, "output", name),
                "MODEL.BACKBONE.NAME", self.clip_path,
                "INPUT.SIZE", (self.resolution, self.resolution),
                "INPUT.TRANSFORMS", ["normalize"],
                "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TEST.BATCH_SIZE", s.test_batch,
                "USE_CUDA", s.device == "cuda", "SEED", s.seed]
        key = precision_key(name)
        if s.prec is not None and key is not None:
            opts += ["TRAINER.{}.PREC".format(key), s.prec]
        if name in DG_TRAINERS:
            opts += ["DATASET.SOURCE_DOMAINS", list(synthetic.DOMAINS),
                     "DATASET.TARGET_DOMAINS", [synthetic.DOMAINS[0]]]
        if name == "GuiDG":
            opts += ["TRAINER.GUIDG.EXPERT_DIR", self.experts(16)]
        if registered_name(name).startswith("ExtrasLinearProbe"):
            opts += ["DATASET.SUBSAMPLE_CLASSES", "base"]  # DePT trains its probe on base classes
        # keys of other trainers' nodes are skipped, so one list serves all
        user = list(s.opts)
        if len(user) % 2:
            raise ConfigError("--opts needs KEY VALUE pairs, got {}.".format(user))
        for key, value in zip(user[::2], user[1::2]):
            if not key.startswith("TRAINER.") or key.split(".")[1] == precision_key(name):
                opts += [key, value]
        return opts

    def build(self, name):
        """The trainer ``name`` built as ``train.py`` builds it, plus its
        per-run preparation (DiSa's prototypes)."""
        quiet = contextlib.nullcontext() if self.settings.verbose else \
            contextlib.redirect_stdout(io.StringIO())
        with quiet:
            cfg = trainer_cfg(name, self.opts(name))
            torch.manual_seed(self.settings.seed)
            trainer = build_trainer(cfg)
            if hasattr(trainer, "class_prototypes"):
                trainer.class_prototypes()  # once per run, before training
            key = getattr(trainer, "cfg_key", None)
            node = cfg.TRAINER.get(key) if key else None
            if node is not None and node.get("PROBE_SOURCE") == "frozen_once":
                trainer.difficulty_table()  # ISP: once per run, before training
        return trainer

    # -- measuring ------------------------------------------------------------
    def train_batch_size(self, trainer):
        cfg = trainer.cfg
        if cfg.TRAINER.NAME in DG_TRAINERS:
            return trainer.method_cfg.BATCH_PER_DOMAIN * len(synthetic.DOMAINS)
        return cfg.DATALOADER.TRAIN_X.BATCH_SIZE

    def random_batch(self, batch_size, device, seed):
        gen = torch.Generator().manual_seed(seed)
        res = self.resolution
        images = torch.randn(batch_size, 3, res, res, generator=gen)
        labels = torch.randint(self.settings.n_classes, (batch_size,), generator=gen)
        domains = torch.arange(batch_size) * len(synthetic.DOMAINS) // batch_size
        return {"img": images.to(device), "label": labels.to(device),
                "index": (torch.arange(batch_size) % (self.settings.n_classes
                                                      * len(synthetic.DOMAINS))).to(device),
                "domain": domains.to(device)}

    def run(self, names, log=print):
        """Measure ``names`` together: every trainer is built first, then the
        timed calls go round-robin (one step of each trainer per round, each
        round starting with the next trainer), so that load changes on a
        shared machine hit every trainer alike."""
        s = self.settings
        subjects = []
        for name in check_trainer_names(names):
            log("building {} ...".format(name))
            subjects.append(_Subject(name, self.build(name), self))
        log("training steps ({} warm-up + {} timed, round-robin) ...".format(s.warmup, s.steps))
        for subject in subjects:
            subject.warm_up_training(s.warmup)
        for round_ in range(s.steps):
            for subject in rotated(subjects, round_):
                subject.time_step()
        log("evaluation ({} test batches of {}, round-robin) ...".format(s.eval_batches,
                                                                       s.test_batch))
        with torch.no_grad():
            for subject in subjects:
                subject.warm_up_evaluation()
            with contextlib.ExitStack() as caches:
                for subject in subjects:
                    caches.enter_context(text_feature_cache(subject.trainer.model))
                    subject.time_eval_batch(first=True)
                for round_ in range(s.eval_batches):
                    for subject in rotated(subjects, round_):
                        subject.time_eval_batch()
        results = [subject.result() for subject in subjects]
        del subjects
        gc.collect()
        if s.device == "cuda":
            torch.cuda.empty_cache()
        return results


def rotated(items, shift):
    """``items`` starting at ``shift`` (mod len): each round of the timed calls
    starts with another trainer, so whatever the first call of a round pays
    (caches and pages taken by the last trainer of the previous round) hits
    each trainer in at most a few rounds."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def module_mib(trainer):
    """MiB of the parameters and buffers of the trainer's model and of its
    other registered models (each storage counted once)."""
    modules = [trainer.model] + [trainer._models[n] for n in trainer.get_model_names()]
    seen, total = set(), 0
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            key = (tensor.device, tensor.untyped_storage().data_ptr())
            if key not in seen:
                seen.add(key)
                total += tensor.untyped_storage().nbytes()
    return total / 2 ** 20


class _Subject:
    """One trainer under measurement and its timings so far."""

    def __init__(self, name, trainer, bench):
        s = bench.settings
        self.name, self.trainer, self.device = name, trainer, trainer.device
        self.batch_size = bench.train_batch_size(trainer)
        self.batch = bench.random_batch(self.batch_size, self.device, s.seed)
        self.test_images = bench.random_batch(s.test_batch, self.device, s.seed + 1)["img"]
        self.trains = bool(trainer.get_model_names())
        self.step_times, self.eval_times = [], []
        self.first_eval = None
        self.train_mem = self.eval_mem = None
        self.model_mib = module_mib(trainer)

    def step(self):
        trainer = self.trainer
        trainer.set_model_mode("train")
        trainer.batch_idx, trainer.num_batches = 0, 10 ** 9  # no end-of-epoch LR step
        trainer.forward_backward(self.batch)

    def warm_up_training(self, n):
        if self.trains:
            with PeakMemory(self.device) as memory:
                for _ in range(max(1, n)):
                    self.step()
            self.train_mem = memory.mib

    def time_step(self):
        if self.trains:
            self.step_times.append(timed(self.step, self.device))

    def infer(self):
        self.trainer.set_model_mode("eval")
        self.trainer.model_inference(self.test_images)

    def warm_up_evaluation(self):
        with PeakMemory(self.device) as memory:
            with text_feature_cache(self.trainer.model):
                self.infer()
                self.infer()
        self.eval_mem = memory.mib

    def time_eval_batch(self, first=False):
        seconds = timed(self.infer, self.device)
        if first:
            self.first_eval = seconds
        else:
            self.eval_times.append(seconds)

    def result(self):
        # the fastest call: on a shared machine other work only ever adds time
        batch_s = min(self.eval_times)
        step = min(self.step_times) if self.step_times else None
        return TrainerResult(self.name, TRAINER_CONFIGS[self.name],
                             getattr(self.trainer, "precision", "fp32"), self.batch_size, step,
                             len(self.test_images) / batch_s,
                             max(0.0, self.first_eval - batch_s), self.train_mem,
                             self.eval_mem, self.model_mib)


def run_benchmarks(settings, names, log=print):
    """Measure every trainer in ``names`` (in order) in this process;
    returns ``(resolved settings, [TrainerResult])``."""
    with Workbench(settings) as bench:
        return bench.settings, bench.run(names, log)
