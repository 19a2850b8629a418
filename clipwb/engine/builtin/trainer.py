"""Trainers with Dassl 0.6.3's API: ``TrainerBase``, ``SimpleTrainer``,
``TrainerX``, ``TrainerXU``, ``SimpleNet``, ``TRAINER_REGISTRY``.

Method names, call order, checkpoint files and printed lines follow Dassl so
CoOp-family trainers run unchanged. Output under ``cfg.OUTPUT_DIR``:
``<model name>/model.pth.tar-<epoch>`` (+ ``model-best.pth.tar``,
``checkpoint``), ``tensorboard/``.

``SimpleTrainer`` is Dassl's one-process trainer (:class:`OneProcessTrainer`)
under the torchrun layer :class:`~clipwb.engine.distributed_trainer.DistributedTrainer`,
the same layer the project's trainers put over real Dassl's ``TrainerX``.
"""
import datetime
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from clipwb.errors import ConfigError, MissingFileError

from ..distributed_trainer import DistributedTrainer
from ..progress import batches_left, report_batch

from .data import DataManager
from .evaluation import build_evaluator
from .lr_scheduler import build_lr_scheduler
from .modeling import build_backbone, build_head
from .optim import build_optimizer
from .registry import Registry, check_availability
from .utils import (AverageMeter, MetricMeter, count_num_param, load_checkpoint,
                    load_pretrained_weights, mkdir_if_missing,
                    resume_from_checkpoint, save_checkpoint, tolist_if_not)

__all__ = ["TRAINER_REGISTRY", "build_trainer", "SimpleNet", "TrainerBase",
           "SimpleTrainer", "TrainerX", "TrainerXU"]

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    """Instantiate the trainer registered as ``cfg.TRAINER.NAME``."""
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names(),
                       what="TRAINER.NAME (--trainer)")
    if cfg.VERBOSE:
        print("Loading trainer: {}".format(cfg.TRAINER.NAME))
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


class SimpleNet(nn.Module):
    """Backbone (MODEL.BACKBONE), optional MLP head (MODEL.HEAD) and a linear
    classifier when ``num_classes > 0``."""

    def __init__(self, cfg, model_cfg, num_classes, **kwargs):
        super().__init__()
        self.backbone = build_backbone(model_cfg.BACKBONE.NAME,
                                       verbose=cfg.VERBOSE,
                                       pretrained=model_cfg.BACKBONE.PRETRAINED,
                                       **kwargs)
        fdim = self.backbone.out_features
        self.head = None
        if model_cfg.HEAD.NAME and model_cfg.HEAD.HIDDEN_LAYERS:
            self.head = build_head(model_cfg.HEAD.NAME, verbose=cfg.VERBOSE,
                                   in_features=fdim,
                                   hidden_layers=model_cfg.HEAD.HIDDEN_LAYERS,
                                   activation=model_cfg.HEAD.ACTIVATION,
                                   bn=model_cfg.HEAD.BN,
                                   dropout=model_cfg.HEAD.DROPOUT, **kwargs)
            fdim = self.head.out_features
        self.classifier = nn.Linear(fdim, num_classes) if num_classes > 0 else None
        self._fdim = fdim

    @property
    def fdim(self):
        return self._fdim

    def forward(self, x, return_feature=False):
        f = self.backbone(x)
        if self.head is not None:
            f = self.head(f)
        if self.classifier is None:
            return f
        y = self.classifier(f)
        return (y, f) if return_feature else y


def _make_summary_writer(log_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        print("Note: tensorboard is not available ({}); scalars are not "
              "logged".format(err))
        return None
    return SummaryWriter(log_dir=log_dir)


class TrainerBase:
    """Registered models/optimizers/schedulers, checkpoints and the epoch loop."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None

    # ---- models ---------------------------------------------------------
    def register_model(self, name="model", model=None, optim=None, sched=None):
        for attr in ("_models", "_optims", "_scheds"):
            if self.__dict__.get(attr) is None:
                raise AttributeError(
                    "Cannot register a model before super().__init__() call")
        if name in self._models:
            raise KeyError("Found duplicate model names: {}".format(name))
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        real = list(self._models.keys())
        if names is None:
            return real
        names = tolist_if_not(names)
        for name in names:
            if name not in real:
                raise KeyError("Unknown model name {!r}; registered: {}".format(
                    name, real))
        return names

    def save_model(self, epoch, directory, is_best=False, val_result=None,
                   model_name=""):
        """Save each registered model to ``directory/<name>/`` (epoch stored as
        ``epoch + 1``)."""
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_model_if_exist(self, directory):
        """Resume every model from ``directory/<name>/checkpoint``; return the
        epoch to start from (0 when any model's folder is missing)."""
        names = self.get_model_names()
        if any(not osp.exists(osp.join(directory, name)) for name in names):
            print("No checkpoint found, train from scratch")
            return 0
        print("Found checkpoint at {} (will resume training)".format(directory))
        start_epoch = 0
        for name in names:
            start_epoch = resume_from_checkpoint(
                osp.join(directory, name), self._models[name],
                self._optims[name], self._scheds[name])
        return start_epoch

    def load_model(self, directory, epoch=None):
        """Load ``directory/<name>/model-best.pth.tar`` (or
        ``model.pth.tar-<epoch>``) into each registered model."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is "
                  "given (ignore this if it's done on purpose)")
            return
        model_file = ("model-best.pth.tar" if epoch is None
                      else "model.pth.tar-" + str(epoch))
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise MissingFileError(
                    "No model at {} (check --model-dir and --load-epoch)".format(
                        model_path))
            checkpoint = load_checkpoint(model_path)
            val_result = checkpoint.get("val_result")
            shown = "None" if val_result is None else "{:.1f}".format(val_result)
            print("Load {} to {} (epoch={}, val_result={})".format(
                model_path, name, checkpoint["epoch"], shown))
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError("mode must be 'train', 'test' or 'eval', got "
                               "{!r}".format(mode))

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    # ---- tensorboard ----------------------------------------------------
    def init_writer(self, log_dir):
        if self.__dict__.get("_writer") is None:
            print("Initialize tensorboard (log_dir={})".format(log_dir))
            self._writer = _make_summary_writer(log_dir)

    def close_writer(self):
        if self.__dict__.get("_writer") is not None:
            self._writer.close()

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self.__dict__.get("_writer") is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # ---- loop -----------------------------------------------------------
    def train(self, start_epoch, max_epoch):
        """Run epochs ``start_epoch .. max_epoch - 1`` with the hooks."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class OneProcessTrainer(TrainerBase):
    """Dassl's ``SimpleTrainer`` on one process: builds data (``DataManager``),
    model, evaluator; train / test pipeline."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg):
        """Hook for trainer-specific config checks (no-op by default)."""

    def build_data_loader(self):
        """Set ``train_loader_x/u``, ``val_loader``, ``test_loader``,
        ``num_classes``, ``num_source_domains``, ``lab2cname`` and ``dm``."""
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self):
        """Build and register a ``SimpleNet`` with its optimizer and scheduler."""
        cfg = self.cfg
        print("Building model")
        self.model = SimpleNet(cfg, cfg.MODEL, self.num_classes)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        print("# params: {:,}".format(count_num_param(self.model)))
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
        # Several GPUs: one process each (torchrun, DistributedTrainer), not
        # Dassl's nn.DataParallel.

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        writer_dir = osp.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self):
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print("Elapsed: {}".format(datetime.timedelta(seconds=elapsed)))
        self.close_writer()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir,
                                val_result=curr_result,
                                model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split=None):
        """Evaluate on ``split`` (default ``TEST.SPLIT``; the test set when it is
        not "val" or there is no val set); return the first metric."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print("Evaluate on the *{}* set".format(split))
        for batch in tqdm(data_loader):
            input, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(input), label)
        results = self.evaluator.evaluate()
        for key, value in results.items():
            self.write_scalar("{}/{}".format(split, key), value, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]

    # ---- shared by TrainerX / TrainerXU ----------------------------------
    def _after_batch(self, losses, batch_time, data_time):
        """Dassl's progress line, with Dassl's ETA (the epoch's mean batch time
        times the batches left), and the scalars."""
        report_batch(self, losses, batch_time, data_time,
                     batch_time.avg * batches_left(self))


class SimpleTrainer(DistributedTrainer, OneProcessTrainer):
    """Dassl's ``SimpleTrainer``; under torchrun the ranks together give the
    one-process run (:class:`~clipwb.engine.distributed_trainer.DistributedTrainer`)."""


class TrainerX(SimpleTrainer):
    """Trainer on labelled data only (``train_loader_x``)."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            self._after_batch(losses, batch_time, data_time)
            end = time.time()

    def parse_batch_train(self, batch):
        return (batch["img"].to(self.device), batch["label"].to(self.device),
                batch["domain"].to(self.device))


class TrainerXU(SimpleTrainer):
    """Trainer on labelled (``train_loader_x``) and unlabelled
    (``train_loader_u``) data; ``TRAIN.COUNT_ITER`` sets the epoch length."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        len_x, len_u = len(self.train_loader_x), len(self.train_loader_u)
        count = self.cfg.TRAIN.COUNT_ITER
        lengths = {"train_x": len_x, "train_u": len_u,
                   "smaller_one": min(len_x, len_u)}
        if count not in lengths:
            raise ConfigError("TRAIN.COUNT_ITER must be one of {}, got {!r}".format(
                list(lengths), count))
        self.num_batches = lengths[count]
        iter_x, iter_u = iter(self.train_loader_x), iter(self.train_loader_u)
        end = time.time()
        for self.batch_idx in range(self.num_batches):
            try:
                batch_x = next(iter_x)
            except StopIteration:
                iter_x = iter(self.train_loader_x)
                batch_x = next(iter_x)
            try:
                batch_u = next(iter_u)
            except StopIteration:
                iter_u = iter(self.train_loader_u)
                batch_u = next(iter_u)
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch_x, batch_u)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            self._after_batch(losses, batch_time, data_time)
            end = time.time()

    def parse_batch_train(self, batch_x, batch_u):
        return (batch_x["img"].to(self.device), batch_x["label"].to(self.device),
                batch_u["img"].to(self.device))
