"""The shared base of the CLIP prompt trainers (a Dassl ``TrainerX``).

A subclass sets ``cfg_key`` (its ``TRAINER.<KEY>`` node) and implements
:meth:`ClipPromptTrainer.build_clip_model`; optionally :meth:`compute_loss`.
The base loads CLIP, applies the precision mode, freezes everything but the
learnable module, registers it as ``prompt_learner`` (checkpoints in
``prompt_learner/model.pth.tar-EPOCH``), runs the training step in the
precision mode, loads checkpoints as CoOp does, and computes the
image-independent text features once per evaluation. Resume, the log and
interrupts come from :class:`~clipwb.trainers.kit.resumable.ResumableTrainer`.
"""
import os
import os.path as osp

import torch
import torch.nn.functional as F

from clipwb.engine import (TrainerX, build_data_loader, build_optimizer, build_transform,
                           compute_accuracy, load_checkpoint, load_pretrained_weights)
from clipwb.engine.distributed import scaled_backward
from clipwb.errors import ConfigError, MissingFileError, UserInputError

from clipwb.trainers.kit.clip_loader import check_input_size, load_clip
from clipwb.trainers.kit.frozen_clip import frozen_image_features
from clipwb.trainers.kit.lr_schedule import BatchSteppedSchedule
from clipwb.trainers.kit.precision import (PROMPT_PRECISIONS, apply_weight_precision,
                                           autocast_context, check_precision, keeps_half_features,
                                           learnable_dtype, make_grad_scaler, resolve_precision,
                                           rounds_prompts)
from clipwb.trainers.kit.prompt_learners import CLASS_DEPENDENT_KEYS, convert_legacy_state_dict
from clipwb.trainers.kit.prompted_clip import set_arithmetic, text_feature_cache
from clipwb.trainers.kit.prompted_encoders import FULL_SEQUENCES_ENV
from clipwb.trainers.kit.resumable import ResumableTrainer


#: what to do when a checkpoint does not fit the model built from the config
CHECKPOINT_HINT = ("Use the trainer and config (N_CTX, prompt depths, CSC, backbone) "
                   "the checkpoint was trained with.")


class ClipPromptTrainer(BatchSteppedSchedule, ResumableTrainer, TrainerX):
    """Base trainer for prompt learning on a frozen CLIP."""

    #: name of the trainer's config node, ``cfg.TRAINER.<cfg_key>``
    cfg_key = None
    #: registered model name (the checkpoint folder)
    model_name = "prompt_learner"
    #: attribute of ``self.model`` holding every learnable parameter
    learnable_module = "prompt_learner"
    #: checkpoint folders of the original code that load_model also accepts
    legacy_model_names = ()
    #: under the official ``PREC fp16``, features, logits and losses stay
    #: float16 as in the official code (a method without official code whose
    #: own losses are float32 sets False)
    official_half_features = True

    # -- config -------------------------------------------------------------
    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.cfg_key]

    def cfg_name(self, key):
        """Full config key name, e.g. ``TRAINER.COOP.N_CTX``."""
        return "TRAINER.{}.{}".format(self.cfg_key, key)

    def check_cfg(self, cfg):
        if self.cfg_key not in cfg.TRAINER:
            raise ConfigError(
                "{} is missing: call clipwb.plugin.extend_cfg(cfg) before merging config "
                "files.".format("TRAINER." + str(self.cfg_key)))
        check_precision(cfg.TRAINER[self.cfg_key].PREC, "TRAINER.{}.PREC".format(self.cfg_key),
                        PROMPT_PRECISIONS)

    def requested_precision(self):
        """``(mode, config key)`` of the precision asked for."""
        return self.method_cfg.PREC, self.cfg_name("PREC")

    def requires_vit(self, cfg):
        """Whether the method needs a ViT image encoder (vision prompts)."""
        return False

    # -- model --------------------------------------------------------------
    def build_clip_model(self, cfg, classnames, clip_model):
        """Return the method's ``nn.Module`` (``forward(images) -> logits``).
        Learnable tensors the official code creates in CLIP's dtype are
        created in ``self.learnable_dtype``."""
        raise NotImplementedError

    def construction_draws(self, cfg):
        """The prompts the official code draws while CLIP is built (a
        :class:`~clipwb.trainers.kit.initial_draws.ConstructionDraws`, kept in
        ``self.drawn``), or None (the default: nothing is drawn then)."""
        return None

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        print("Loading CLIP (backbone: {})".format(cfg.MODEL.BACKBONE.NAME))
        self.drawn = self.construction_draws(cfg)
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, draws=self.drawn)
        check_input_size(cfg.INPUT.SIZE, clip_model)
        if self.requires_vit(cfg) and not hasattr(clip_model.visual, "transformer"):
            raise ConfigError(
                "{} prompts the vision transformer, but MODEL.BACKBONE.NAME {} is a "
                "ResNet CLIP: use a ViT backbone (e.g. ViT-B/16).".format(
                    type(self).__name__, cfg.MODEL.BACKBONE.NAME))
        prec, prec_key = self.requested_precision()
        self.precision = resolve_precision(prec, self.device, prec_key, PROMPT_PRECISIONS)
        self.learnable_dtype = learnable_dtype(self.precision)
        clip_model.to(self.device)
        apply_weight_precision(clip_model, self.precision)

        print("Building custom CLIP")
        # (random initial values are drawn on the CPU, as the official code
        # draws them, and moved with the model)
        self.model = self.build_clip_model(cfg, classnames, clip_model)
        set_arithmetic(self.model, round_prompts=rounds_prompts(self.precision),
                       half_features=(self.official_half_features
                                      and keeps_half_features(self.precision)),
                       full_sequences=os.environ.get(FULL_SEQUENCES_ENV) == "1")
        self.model.to(self.device)
        learner = (getattr(self.model, self.learnable_module)
                   if self.learnable_module else None)
        self.freeze_learnable()
        self.scaler = make_grad_scaler(self.precision, self.device)
        if learner is None:
            return
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)
        self.optim = self.build_learner_optimizer(learner)
        self.sched = self.build_scheduler(self.optim)
        self.register_model(self.model_name, learner, self.optim, self.sched)

    def freeze_learnable(self):
        """Turn off the gradients of everything that does not train (default:
        all but ``self.model.<learnable_module>``)."""
        return self.freeze_all_but(self.learnable_module)

    def build_learner_optimizer(self, learner):
        """The optimizer of the learnable parameters (default: ``OPTIM`` over
        ``learner``, the registered module)."""
        return build_optimizer(learner, self.cfg.OPTIM)

    def freeze_all_but(self, prefix):
        """Turn off gradients outside ``self.model.<prefix>``; print what trains."""
        print("Turning off gradients in both the image and the text encoder")
        enabled = []
        for name, param in self.model.named_parameters():
            train = bool(prefix) and name.startswith(prefix + ".")
            param.requires_grad_(train)
            if train:
                enabled.append(name)
        print("Parameters to be updated: {}".format(sorted(enabled)))
        print("Parameters count: {}".format(len(enabled)))
        return enabled

    @torch.no_grad()
    def frozen_train_features(self, image_encoder):
        """Unit-norm frozen image features [N, D] and labels [N] of every
        training image (``train_x``, in dataset order, so row ``i`` is the
        batch ``index`` ``i``) under the test transform: one pass per run."""
        cfg = self.cfg
        loader = build_data_loader(cfg, sampler_type="SequentialSampler",
                                   data_source=self.dm.dataset.train_x,
                                   batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                                   tfm=build_transform(cfg, is_train=False), is_train=False)
        features, labels = [], []
        for batch in loader:
            with autocast_context(self.precision, self.device):
                features.append(frozen_image_features(image_encoder,
                                                      batch["img"].to(self.device)))
            labels.append(batch["label"])
        return torch.cat(features), torch.cat(labels).to(self.device)

    # -- training -------------------------------------------------------------
    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def compute_loss(self, images, labels):
        """``(loss, summary dict)`` for one batch; default: cross-entropy."""
        output = self.model.forward_features(images)
        loss = F.cross_entropy(output.logits, labels)
        return loss, {"loss": loss.item(),
                      "acc": compute_accuracy(output.logits, labels)[0].item()}

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with autocast_context(self.precision, self.device):
            loss, summary = self.compute_loss(images, labels)
        self.backward_and_step(loss)
        self.update_lr_after_batch()
        return summary

    def backward_and_step(self, loss):
        """Backward and optimizer step (through the GradScaler for amp); under
        torchrun the gradients are averaged over the ranks in between (amp:
        :func:`~clipwb.engine.distributed.scaled_backward`, so that a step
        overflows and is skipped where the one-process step is)."""
        if self.scaler is None:
            self.model_backward_and_update(loss)  # (its model_backward syncs)
            return
        self.model_zero_grad()
        self.detect_anomaly(loss)
        # (torchrun: each rank's float16 gradients at the one-process size)
        scaled_backward(self.scaler, loss, self.learnable_parameters())
        for name in self.get_model_names():
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    # -- evaluation -----------------------------------------------------------
    def model_inference(self, input):
        with autocast_context(self.precision, self.device):
            return self.model(input).float()

    def test(self, split=None):
        # Image-independent text features: encoded once for the whole split.
        with text_feature_cache(self.model):
            return super().test(split)

    # -- checkpoints ------------------------------------------------------------
    def _checkpoint_path(self, directory, name, model_file):
        candidates = [name] + [n for n in self.legacy_model_names if n != name]
        for folder in candidates:
            path = osp.join(directory, folder, model_file)
            if osp.exists(path):
                return path
        path = osp.join(directory, name, model_file)
        folder = osp.join(directory, name)
        saved = ""
        if osp.isdir(folder):
            files = sorted(f for f in os.listdir(folder) if f.startswith("model"))
            saved = " Saved there: {}.".format(", ".join(files) or "nothing")
        raise MissingFileError(
            'Model not found at "{}".{} Pass --model-dir the output folder of a '
            "training run and --load-epoch an epoch it saved (omit it to load "
            "model-best.pth.tar).".format(path, saved))

    def missing_weights_message(self, model_path, lacking, unexpected):
        """The error sentence when the checkpoint ``model_path`` has no weights
        for the learnable entries ``lacking`` (``unexpected``: its entries this
        model has no place for). A trainer with optional modules overrides it
        to name the setting that loads the checkpoint."""
        return 'The checkpoint "{}" has no weights for {} of {}. {}'.format(
            model_path, ", ".join(lacking), type(self).__name__, CHECKPOINT_HINT)

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        names = self.get_model_names()
        if not names:
            print("Note that load_model() is skipped: {} has no learnable weights".format(
                type(self).__name__))
            return
        model_file = "model-best.pth.tar" if epoch is None else "model.pth.tar-{}".format(epoch)
        for name in names:
            model_path = self._checkpoint_path(directory, name, model_file)
            checkpoint = load_checkpoint(model_path)
            state_dict = convert_legacy_state_dict(checkpoint["state_dict"])
            # Ignore fixed token vectors (computed from the current class names)
            state_dict = {k: v for k, v in state_dict.items()
                          if k.rsplit(".", 1)[-1] not in CLASS_DEPENDENT_KEYS}
            print('Loading weights to {} from "{}" (epoch = {})'.format(
                name, model_path, checkpoint.get("epoch")))
            model = self._models[name]
            try:
                missing, unexpected = model.load_state_dict(state_dict, strict=False)
            except RuntimeError as err:
                raise UserInputError('The checkpoint "{}" does not fit this {} model ({}). '
                                     "{}".format(model_path, type(self).__name__,
                                                 " ".join(str(err).split()),
                                                 CHECKPOINT_HINT)) from None
            learnable = {n for n, _ in model.named_parameters()}
            lacking = sorted(k for k in missing if k in learnable)
            if lacking:
                raise UserInputError(self.missing_weights_message(model_path, lacking,
                                                                  sorted(unexpected)))
            if unexpected:
                print("Ignored checkpoint entries: {}".format(", ".join(sorted(unexpected))))
