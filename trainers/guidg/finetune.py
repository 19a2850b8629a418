"""Full fine-tuning of CLIP's image encoder for domain generalization.

``DGFinetuneTrainer`` is the shared loop of CLIPood, ERM + WiSE-FT, UEO +
WiSE-FT and GuiDG (``trainers/guidg/trainer.py``). The image encoder is trained, the
text side is a frozen stack of classifiers ``[d, C, D]`` (one zero-shot
classifier for the baselines; one per domain expert for GuiDG) and the
evaluated encoder is a separate averaged copy (Beta moving average or WiSE-FT).

Batches hold ``BATCH_PER_DOMAIN`` images of each source domain
(:class:`DomainBalancedBatchSampler`), ``ITERS_PER_EPOCH`` batches an epoch.
Master weights stay float32; ``PREC`` amp / bf16 autocast the forward on CUDA
(``fp16`` runs as amp: half-precision master weights lose the tiny AdamW
updates); the CPU runs fp32. The official code's choices (``PREC
fp16_master``, ``TRAIN_TRANSFORM randaugment``, ``WISE_RESET``) are options
(``trainers/guidg/official.py``); so are the official full-data protocol's
transforms and test batch (``trainers/guidg/full_data.py``).
"""
import torch
from clip.model import convert_weights
from torch import nn
from torch.utils.data import DataLoader

from clipwb.engine import (DatasetWrapper, TrainerX, build_optimizer, build_transform,
                           compute_accuracy, distributed)
from clipwb.errors import ConfigError

from clipwb.trainers.kit.clip_loader import check_input_size, load_clip
from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.kit.frozen_clip import class_text_features
from clipwb.trainers.kit.lr_schedule import BatchSteppedSchedule
from clipwb.trainers.guidg.averaging import AveragedEncoder
from clipwb.trainers.guidg.cmattn import batch_weights, mix_expert_logits
from clipwb.trainers.guidg.losses import (expert_weighted_loss, mms_logits, per_expert_cross_entropy,
                           ueo_regularizer)
from clipwb.trainers.guidg.sampler import (DomainBalancedBatchSampler,
                                           with_replacement)
from clipwb.trainers.guidg.full_data import (full_data_test_loader, full_data_transforms,
                                             set_full_data_transforms)
from clipwb.trainers.guidg.official import (FINETUNE_PRECISIONS, FP16_MASTER, TRAIN_TRANSFORMS,
                                            float32_while, fp16_master_step,
                                            randaugment_transform, resolve_fp16_master)
from clipwb.trainers.kit.precision import autocast_context, make_grad_scaler, resolve_precision
from clipwb.trainers.kit.prompted_encoders import PromptedTextEncoder
from clipwb.trainers.kit.resumable import ResumableTrainer

BASELINES = ("clipood", "erm", "ueo")
WEIGHTINGS = ("batch", "sample")

#: keys every fine-tuning node has (a method adds or overrides some)
FINETUNE_DEFAULTS = {
    "PREC": "amp",                     # amp / bf16 autocast on CUDA (fp16 runs as amp)
    "TEMPLATE": "a photo of a {}.",    # zero-shot classifier of the baselines
    "BATCH_PER_DOMAIN": 16,            # images of each source domain in a batch
    "ITERS_PER_EPOCH": 400,            # batches an epoch (0: one pass of the smallest domain)
    "SAMPLING": "queue",               # queue (no repeat per pass) / replacement (official)
    "MARGIN": 0.3,                     # MMS margin lambda (CLIPood)
    "BMA_BETA": 0.5,                   # Beta(beta, beta) of the moving average (CLIPood)
    "WISE_ALPHA": 0.5,                 # WiSE-FT weight of the fine-tuned model
    "UEO_WEIGHT": 0.01,                # weight of the UEO entropy term
    "TRAIN_TRANSFORM": "dassl",        # dassl (INPUT.TRANSFORMS) / randaugment (official)
    "WISE_RESET": False,               # True: training goes on from the WiSE-FT mix (official)
    "FULL_DATA_TEST_BATCH": 0,         # test batch with NUM_SHOTS 0 (0: DATALOADER.TEST's)
}


def add_finetune_keys(cfg, name, **overrides):
    values = dict(FINETUNE_DEFAULTS)
    values.update(overrides)
    return add_trainer_keys(cfg, name, values)


def extend_cfg(cfg):
    add_finetune_keys(cfg, "CLIPOOD")
    add_finetune_keys(cfg, "ERMWISEFT")
    add_finetune_keys(cfg, "UEOWISEFT")


class GuidedCLIP(nn.Module):
    """A trainable image encoder, frozen classifiers and optional expert weights.

    ``classifiers`` [d, C, D] are unit-norm class text features of ``d``
    classifiers; ``weighter(features, classifiers) -> [B, d]`` (CMAttn) mixes
    them, or uniform weights when it is None.
    """

    def __init__(self, visual, classifiers, logit_scale, weighter=None, weighting="batch"):
        super().__init__()
        self.visual = visual
        self.weighter = weighter
        self.weighting = weighting
        self.register_buffer("classifiers", classifiers.float(), persistent=False)
        self.scale = float(logit_scale)

    @property
    def num_classifiers(self):
        return self.classifiers.shape[0]

    def features(self, images, encoder=None):
        encoder = self.visual if encoder is None else encoder
        dtype = next(encoder.parameters()).dtype
        return nn.functional.normalize(encoder(images.to(dtype)).float(), dim=-1)

    def logits(self, features, labels=None, margin=0.0):
        """Per-classifier logits [B, d, C] (MMS with ``margin`` and ``labels``)."""
        return torch.stack([mms_logits(features, t, labels, self.scale, margin)
                            for t in self.classifiers], dim=1)

    def weights(self, features, across_ranks=False):
        """Classifier weights ([d] batch mean or [B, d] per sample).

        ``across_ranks`` (training: under torchrun each rank holds a slice of
        the global batch): the batch mean is the global batch's, the mean over
        the ranks of the slices' means (differentiable,
        :func:`clipwb.engine.distributed.mean_over_ranks`). A test batch is
        evaluated whole by one rank, so it is never reduced.
        """
        if self.weighter is None:
            return torch.full((self.num_classifiers,), 1.0 / self.num_classifiers,
                              device=features.device)
        weights = batch_weights(self.weighter(features, self.classifiers), self.weighting)
        if across_ranks and weights.dim() == 1:
            weights = distributed.mean_over_ranks(weights)
        return weights

    def forward(self, images, encoder=None):
        """Test-time logits: classifier logits mixed by the weights (no margin)."""
        features = self.features(images, encoder)
        return mix_expert_logits(self.logits(features), self.weights(features))


class DGFinetuneTrainer(BatchSteppedSchedule, ResumableTrainer, TrainerX):
    """Shared fine-tuning loop (see the module docstring)."""

    cfg_key = None
    #: "clipood" (MMS + BMA), "erm" (CE + WiSE-FT) or "ueo" (CE + UEO + WiSE-FT)
    baseline = None

    @property
    def method_cfg(self):
        return self.cfg.TRAINER[self.cfg_key]

    def key(self, name):
        return "TRAINER.{}.{}".format(self.cfg_key, name)

    def get_baseline(self):
        return self.baseline

    def check_cfg(self, cfg):
        if self.cfg_key not in cfg.TRAINER:
            raise ConfigError("TRAINER.{} is missing: call clipwb.plugin.extend_cfg(cfg) before "
                              "merging config files.".format(self.cfg_key))
        node = cfg.TRAINER[self.cfg_key]
        check_choice(node.PREC, FINETUNE_PRECISIONS, self.key("PREC"))
        check_choice(node.TRAIN_TRANSFORM, TRAIN_TRANSFORMS, self.key("TRAIN_TRANSFORM"))
        check_choice(node.WISE_RESET, (True, False), self.key("WISE_RESET"))
        if node.WISE_RESET and node.get("BASELINE", self.baseline) == "clipood":
            raise ConfigError("{} True resets training to the WiSE-FT mix, which the clipood "
                              "baseline (BMA) does not use: set it False.".format(
                                  self.key("WISE_RESET")))
        check_min(node.BATCH_PER_DOMAIN, 1, self.key("BATCH_PER_DOMAIN"))
        check_min(node.ITERS_PER_EPOCH, 0, self.key("ITERS_PER_EPOCH"))
        check_min(node.FULL_DATA_TEST_BATCH, 0, self.key("FULL_DATA_TEST_BATCH"))
        check_min(node.MARGIN, 0, self.key("MARGIN"))
        check_min(node.BMA_BETA, 1e-6, self.key("BMA_BETA"))
        check_min(node.UEO_WEIGHT, 0, self.key("UEO_WEIGHT"))
        if not 0 <= node.WISE_ALPHA <= 1:
            raise ConfigError("{} = {} must be in [0, 1].".format(self.key("WISE_ALPHA"),
                                                                   node.WISE_ALPHA))
        if "{}" not in node.TEMPLATE:
            raise ConfigError("{} = {!r} needs a {{}} where the class name goes.".format(
                self.key("TEMPLATE"), node.TEMPLATE))
        if not cfg.DATASET.SOURCE_DOMAINS:
            raise ConfigError("{} trains on source domains: set DATASET.SOURCE_DOMAINS "
                              "(--source-domains).".format(type(self).__name__))
        # torchrun: the global batch is BATCH_PER_DOMAIN images of every source domain
        distributed.check_global_batch(*self.torchrun_batch(cfg))

    @classmethod
    def torchrun_batch(cls, cfg):
        """``(size, how a sentence names it)`` of the global batch torchrun
        splits: ``BATCH_PER_DOMAIN`` images of each source domain (not
        ``DATALOADER.TRAIN_X.BATCH_SIZE``, which step 2 does not use)."""
        per_domain = cfg.TRAINER[cls.cfg_key].BATCH_PER_DOMAIN
        n_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        return per_domain * n_domains, cls.global_batch_key(per_domain, n_domains)

    @classmethod
    def global_batch_key(cls, per_domain, n_domains):
        """How a sentence names the global batch (``per_domain`` images of
        each of ``n_domains`` source domains)."""
        return "TRAINER.{}.BATCH_PER_DOMAIN {} x {} source domains =".format(
            cls.cfg_key, per_domain, n_domains)

    # -- data -----------------------------------------------------------------
    def build_data_loader(self):
        super().build_data_loader()
        node = self.method_cfg
        data = self.dm.dataset.train_x
        full_data = full_data_transforms(self.cfg, self.dm.dataset)
        sampler = DomainBalancedBatchSampler(
            data, node.BATCH_PER_DOMAIN, node.ITERS_PER_EPOCH,
            replacement=with_replacement(node.SAMPLING, self.key("SAMPLING")))
        print("Training batches: {} images from each of {} source domains, {} batches an "
              "epoch{}".format(node.BATCH_PER_DOMAIN, len(sampler.groups), len(sampler),
                               " (drawn with replacement)" if sampler.replacement else ""))
        self.train_loader_x = DataLoader(
            DatasetWrapper(self.cfg, data, transform=self.train_transform(full_data),
                           is_train=True),
            batch_sampler=sampler, num_workers=self.cfg.DATALOADER.NUM_WORKERS,
            pin_memory=torch.cuda.is_available() and self.cfg.USE_CUDA)
        if distributed.is_distributed():  # every rank draws the global batch, keeps its slice
            self.train_loader_x = distributed.RankSlices(
                self.train_loader_x, batch_size=sampler.batch_size,
                key=self.global_batch_key(sampler.per_domain, len(sampler.groups)))
            print("Each of the {} processes takes {} of the {} images of a batch".format(
                distributed.world_size(), sampler.batch_size // distributed.world_size(),
                sampler.batch_size))
        if full_data is not None:
            set_full_data_transforms(self, full_data)
        self.test_loader = full_data_test_loader(self, node.FULL_DATA_TEST_BATCH,
                                                 self.key("FULL_DATA_TEST_BATCH"))

    def train_transform(self, full_data=None):
        """The step-2 train transform: the full-data protocol's augment
        transform (``full_data``), else ``TRAIN_TRANSFORM``'s."""
        if full_data is not None:
            if self.method_cfg.TRAIN_TRANSFORM == "randaugment":
                print("{} randaugment is the official few-shot transform; full data trains "
                      "with the full-data transforms".format(self.key("TRAIN_TRANSFORM")))
            return full_data[0]
        if self.method_cfg.TRAIN_TRANSFORM == "randaugment":
            print("Train transform: resize + center crop + RandAugment + normalize ({} "
                  "randaugment)".format(self.key("TRAIN_TRANSFORM")))
            return randaugment_transform(self.cfg)
        return build_transform(self.cfg, is_train=True)

    # -- model ----------------------------------------------------------------
    def build_classifiers(self, clip_model, classnames):
        """Frozen classifiers [d, C, D]; default: the zero-shot template."""
        text_encoder = PromptedTextEncoder(clip_model)
        features = class_text_features(text_encoder, classnames, [self.method_cfg.TEMPLATE])
        return features.unsqueeze(0)

    def build_weighter(self, feature_dim, num_classes):
        return None

    def build_model(self):
        cfg = self.cfg
        node = self.method_cfg
        print("Loading CLIP (backbone: {})".format(cfg.MODEL.BACKBONE.NAME))
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME)
        check_input_size(cfg.INPUT.SIZE, clip_model)
        if node.PREC == FP16_MASTER:
            self.precision = resolve_fp16_master(self.device, self.key("PREC"))
        else:
            self.precision = resolve_precision(node.PREC, self.device, self.key("PREC"))
        if self.precision == "fp16":
            print("{} = fp16: fine-tuning keeps float32 master weights; using amp".format(
                self.key("PREC")))
            self.precision = "amp"
        clip_model.to(self.device)
        classnames = self.dm.dataset.classnames
        classifiers = self.build_classifiers(clip_model, classnames)
        print("Classifiers: {} x {} classes".format(classifiers.shape[0], classifiers.shape[1]))
        weighter = self.build_weighter(classifiers.shape[-1], classifiers.shape[1])
        visual = clip_model.visual
        if self.precision == FP16_MASTER:
            convert_weights(visual)
        for param in visual.parameters():
            param.requires_grad_(True)
        self.model = GuidedCLIP(visual, classifiers, clip_model.logit_scale.exp().item(),
                                weighter, getattr(node, "WEIGHTING", "batch"))
        self.model.to(self.device)
        # The zero-shot encoder (WiSE-FT's other end) and the evaluated copy.
        self.zero_shot_state = {k: v.detach().clone() for k, v in visual.state_dict().items()}
        if node.WISE_RESET:
            print("{} True: after every epoch training goes on from the WiSE-FT mix (the "
                  "official code)".format(self.key("WISE_RESET")))
        self.eval_encoder = AveragedEncoder(visual).to(self.device)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print("Parameters to be updated: {:,} (image encoder{})".format(
            n_train, " + CMAttn" if weighter is not None else ""))
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = self.build_scheduler(self.optim)
        self.register_model("model", self.model, self.optim, self.sched)
        self.register_model("eval_encoder", self.eval_encoder)
        self.scaler = make_grad_scaler(self.precision, self.device)

    # -- training -------------------------------------------------------------
    @property
    def averaging(self):
        return "bma" if self.get_baseline() == "clipood" else "wise"

    @property
    def total_steps(self):
        return self.max_epoch * len(self.train_loader_x)

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def compute_loss(self, images, labels):
        """The loss of a training batch and its summary.

        Under torchrun ``images`` is this rank's slice of the global batch:
        every per-image mean is the slice's (the mean over the ranks is the
        global batch's), and the two batch statistics, CMAttn's batch-mean
        weights and UEO's mean prediction, are reduced over the ranks
        (:func:`~clipwb.engine.distributed.mean_over_ranks`), so that every
        rank's loss uses the global batch's.
        """
        node = self.method_cfg
        baseline = self.get_baseline()
        margin = node.MARGIN if baseline == "clipood" else 0.0
        features = self.model.features(images)
        logits = self.model.logits(features, labels, margin)
        weights = self.model.weights(features, across_ranks=True)
        loss = expert_weighted_loss(per_expert_cross_entropy(logits, labels), weights)
        summary = {}
        if baseline == "ueo":
            plain = logits if margin == 0 else self.model.logits(features)
            ueo = sum(ueo_regularizer(plain[:, i], distributed.mean_over_ranks)
                      for i in range(plain.shape[1]))
            loss = loss + node.UEO_WEIGHT * ueo
            summary["ueo"] = ueo.detach().item()
        mixed = mix_expert_logits(self.model.logits(features.detach()), weights.detach())
        summary = dict(loss=loss.item(), acc=compute_accuracy(mixed, labels)[0].item(),
                       **summary)
        if self.model.weighter is not None:
            w = (weights if weights.dim() == 1 else weights.mean(0)).detach()
            summary.update({"w{}".format(i): v.item() for i, v in enumerate(w)})
        return loss, summary

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            loss, summary = self.compute_loss(images, labels)
        self.model_zero_grad(["model"])
        self.detect_anomaly(loss)
        # (torchrun: the gradients are averaged over the ranks before every step)
        if self.precision == FP16_MASTER:
            loss.backward()
            self.sync_gradients(["model"])
            fp16_master_step(self.optim, self.model.visual)
        elif self.scaler is None:
            loss.backward()
            self.sync_gradients(["model"])
            self.optim.step()
        else:  # (torchrun: each rank's float16 gradients at the one-process magnitude)
            distributed.scaled_backward(self.scaler, loss, self.learnable_parameters(["model"]))
            self.scaler.step(self.optim)
            self.scaler.update()
        if self.averaging == "bma":
            self.eval_encoder.bma_update(self.model.visual, self.total_steps,
                                         self.method_cfg.BMA_BETA)
        self.update_lr_after_batch(["model"])
        return summary

    def after_epoch(self):
        if self.averaging == "wise":
            self.eval_encoder.wise_ft(self.zero_shot_state, self.model.visual,
                                      self.method_cfg.WISE_ALPHA)
            if self.method_cfg.WISE_RESET:  # the official code: training goes on from the mix
                self.model.visual.load_state_dict(self.eval_encoder.encoder.state_dict())
        super().after_epoch()

    def autocast(self):
        """The forward's autocast (float16 for ``fp16_master``, as the official code)."""
        mode = "amp" if self.precision == FP16_MASTER else self.precision
        return autocast_context(mode, self.device)

    def resume_model_if_exist(self, directory):
        # An optimizer state loads cast to its parameters' dtype: float32 ones (fp16_master).
        with float32_while(self.model.visual, self.precision == FP16_MASTER):
            return super().resume_model_if_exist(directory)

    # -- evaluation -----------------------------------------------------------
    def model_inference(self, input):
        encoder = self.eval_encoder.encoder
        if int(self.eval_encoder.num_updates) == 0:
            encoder = self.model.visual  # not trained yet (or eval of a fresh model)
        with self.autocast():
            return self.model(input, encoder).float()


class CLIPood(DGFinetuneTrainer):
    """CLIPood: margin metric softmax + Beta moving average (Shu et al., ICML 2023)."""

    cfg_key = "CLIPOOD"
    baseline = "clipood"
    #: torchrun: MMS cross-entropy per image; BMA of weights equal on every rank
    torchrun_ready = True


class ERMWiSEFT(DGFinetuneTrainer):
    """ERM fine-tuning of the image encoder, evaluated with WiSE-FT."""

    cfg_key = "ERMWISEFT"
    baseline = "erm"
    #: torchrun: cross-entropy per image; WiSE-FT of weights equal on every rank
    torchrun_ready = True


class UEOWiSEFT(DGFinetuneTrainer):
    """CE + UEO's entropy term, evaluated with WiSE-FT."""

    cfg_key = "UEOWISEFT"
    baseline = "ueo"
    #: torchrun: UEO's mean prediction is the global batch's (compute_loss)
    torchrun_ready = True


def check_baseline(value, key):
    return check_choice(value, BASELINES, key)


def check_weighting(value, key):
    return check_choice(value, WEIGHTINGS, key)
