"""DePT on five prompt learners: ``ExtrasLinearProbe<Base>`` (the official
trainer names) = the base trainer + :class:`DecoupledHeadMixin` (Zhang et
al., "DePT: Decoupled Prompt Tuning", CVPR 2024).

The head, the loss and the test-time rules are
:mod:`~clipwb.trainers.kit.decoupled_head`'s; the optimizer (two learning
rates by module name) :mod:`~clipwb.trainers.kit.staged_optimizer`'s. The
loss of each pairing is the base method's with its cross-entropy split::

    L = (1 - w) CE(s, y) + w CE(z([cwT(f_t)_y ; cwT(f_v)]), [y ; y]) + R

``R``: the base method's other terms, unchanged: KgCoOp's ``W * L_kg`` (on
the text features before normalising, as the official ``elp_kgcoop.py``),
PromptSRC's L_SCL (the paper reports DePT on PromptSRC; the official
repository has no PromptSRC trainer: ``ExtrasLinearProbePromptSRC`` is this
project's pairing, GPA averaging the prompts only). ``w = 0`` is the base
method's loss exactly (KgCoOp: to float rounding, its ``L_kg`` reading the
features before normalising); with ``TEST_TIME_FUSION`` its test logits too.

Keys (the official ``train.py``'s): ``TRAINER.LINEAR_PROBE.{TYPE, WEIGHT,
TEST_TIME_FUSION}``, ``TRAINER.FILM.LINEAR_PROBE``, ``TRAINER.NAMES_TO_UPDATE``
(substrings of the parameters that train), ``OPTIM.{STAGED_LR, NEW_LAYERS,
LR_EXP, BASE_LR_MULT}``; the base method's own node (``TRAINER.COOP``, ...).
Checkpoints: the prompts in ``prompt_learner/`` (the base method's), the head
in ``dept_head/`` (official key names: ``film_lp_img.scale``,
``linear_probe_proj.weight``, ...).
"""
from clipwb.engine import compute_accuracy
from clipwb.errors import ConfigError, UserInputError

from clipwb.trainers.cocoop import CoCoOp
from clipwb.trainers.coop import CoOp
from clipwb.trainers.kgcoop import KgCoOp
from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.kit.decoupled_head import (CLIPPED_IMAGENET_VARIANTS, HEAD_TYPES,
                                                DecoupledHead, decoupled_loss, fused_logits,
                                                imagenet_subset_rows, uses_base_head)
from clipwb.trainers.kit.handcrafted_text import knowledge_guided_loss
from clipwb.trainers.kit.precision import autocast_context
from clipwb.trainers.kit.staged_optimizer import build_staged_optimizer
from clipwb.trainers.maple import MaPLe
from clipwb.trainers.promptsrc import PromptSRC

#: the official ``train.py``'s defaults
NAMES_TO_UPDATE = ["prompt_learner", "linear_probe", "film"]


def extend_cfg(cfg):
    add_trainer_keys(cfg, "LINEAR_PROBE", {
        "TYPE": "linear",  # 'linear' (a probe over the classes) or 'similarity'
        "WEIGHT": 0.7,  # w: the head's share of the loss and of the fused test logits
        "TEST_TIME_FUSION": True,  # base classes: (1 - w) s + w z; False: z alone
    })
    add_trainer_keys(cfg, "FILM", {
        "LINEAR_PROBE": True,  # cwT (FiLM) on both features before the probe
    })
    if "NAMES_TO_UPDATE" not in cfg.TRAINER:
        cfg.TRAINER.NAMES_TO_UPDATE = list(NAMES_TO_UPDATE)
    if "LR_EXP" not in cfg.OPTIM:
        cfg.OPTIM.LR_EXP = 6.5  # STAGED_LR: NEW_LAYERS at LR * LR_EXP
    # DePT's KgCoOp configs carry ALPHA (unused by the official code too)
    add_trainer_keys(cfg, "COOP", {"ALPHA": 1.0})


class DecoupledHeadMixin:
    """DePT's head on a :class:`~clipwb.trainers.kit.prompt_trainer.ClipPromptTrainer`
    (listed before it). A base method with other loss terms returns them
    from :meth:`other_loss_terms`."""

    #: registered model name of the head (its checkpoint folder)
    head_name = "dept_head"

    @property
    def lp_cfg(self):
        return self.cfg.TRAINER.LINEAR_PROBE

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        for node in ("LINEAR_PROBE", "FILM"):
            if node not in cfg.TRAINER:
                raise ConfigError("TRAINER.{} is missing: call clipwb.plugin.extend_cfg(cfg) "
                                  "before merging config files.".format(node))
        check_choice(cfg.TRAINER.LINEAR_PROBE.TYPE, HEAD_TYPES, "TRAINER.LINEAR_PROBE.TYPE")
        check_min(cfg.TRAINER.LINEAR_PROBE.WEIGHT, 0, "TRAINER.LINEAR_PROBE.WEIGHT")

    @property
    def base_rule(self):
        return uses_base_head(self.cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"),
                              self.cfg.DATASET.NAME)

    # -- model ---------------------------------------------------------------
    def build_clip_model(self, cfg, classnames, clip_model):
        model = super().build_clip_model(cfg, classnames, clip_model)
        # after the base method's modules, as the official CustomCLIP builds it
        # (the probe's initial draw comes last)
        model.dept_head = DecoupledHead(clip_model.text_projection.shape[1], len(classnames),
                                        cfg.TRAINER.LINEAR_PROBE.TYPE,
                                        cfg.TRAINER.FILM.LINEAR_PROBE, self.base_rule,
                                        self.learnable_dtype)
        if cfg.DATASET.NAME in CLIPPED_IMAGENET_VARIANTS:
            model.dept_head.source_rows = imagenet_subset_rows(self.dm.dataset)
        return model

    def freeze_learnable(self):
        """Train the parameters whose name contains one of
        ``TRAINER.NAMES_TO_UPDATE`` (the official rule)."""
        names = list(self.cfg.TRAINER.NAMES_TO_UPDATE)
        enabled = []
        for name, param in self.model.named_parameters():
            train = any(part in name for part in names)
            param.requires_grad_(train)
            if train:
                enabled.append(name)
        print("Parameters to be updated: {}".format(sorted(enabled)))
        return enabled

    def official_children(self):
        """The model's children as the official CustomCLIP has them (the
        head's modules are children there): ``OPTIM.NEW_LAYERS`` matches these names."""
        for name, child in self.model.named_children():
            if isinstance(child, DecoupledHead):
                yield from child.named_children()
            else:
                yield name, child

    def build_learner_optimizer(self, learner):
        return build_staged_optimizer(self.official_children(), self.cfg.OPTIM)

    def build_model(self):
        super().build_model()
        self.register_model(self.head_name, self.model.dept_head, None, None)

    def learnable_parameters(self, names=None):
        """Every parameter of the model that trains (what the staged
        optimizer holds): ``NAMES_TO_UPDATE`` may select parameters outside
        the registered prompt learner and head, and under torchrun their
        gradients are averaged too."""
        return [p for p in self.model.parameters() if p.requires_grad]

    # -- training ------------------------------------------------------------
    def other_loss_terms(self, output, images, labels):
        """The base method's terms besides its cross-entropy: ``(R or None,
        summary dict)``."""
        return None, {}

    def compute_loss(self, images, labels):
        if not self.base_rule:
            raise UserInputError(
                "{} trains its probe on base classes: train with DATASET.SUBSAMPLE_CLASSES "
                "base (or all on ImageNet); {} on {} is for testing only.".format(
                    type(self).__name__, self.cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"),
                    self.cfg.DATASET.NAME))
        output = self.model.forward_features(images)
        head = self.model.dept_head
        head_logits, head_labels = head(output.text_raw, output.image_raw, labels,
                                        self.model.logit_scale)
        loss, loss_sim, loss_head = decoupled_loss(output.logits, labels, head_logits,
                                                   head_labels, self.lp_cfg.WEIGHT)
        other, summary = self.other_loss_terms(output, images, labels)
        if other is not None:
            loss = loss + other
        return loss, dict({"loss": loss.item(),
                           "acc": compute_accuracy(output.logits, labels)[0].item(),
                           "loss_sim": loss_sim.item(), "loss_lp": loss_head.item()},
                          **summary)

    # -- evaluation ------------------------------------------------------------
    def dept_logits(self, images):
        """Test logits: base rule fused (or the probe alone), else similarity."""
        output = self.model.forward_features(images)
        if not self.base_rule:
            return output.logits
        head_logits, _ = self.model.dept_head(output.text_raw, output.image_raw, None,
                                              self.model.logit_scale)
        return fused_logits(output.logits, head_logits, self.lp_cfg.WEIGHT,
                            self.lp_cfg.TEST_TIME_FUSION)

    def model_inference(self, input):
        with autocast_context(self.precision, self.device):
            return self.dept_logits(input).float()


# torchrun (declared per class): both cross-entropies are means over the
# images (the head's over [t_y ; v], 2 rows per image), R the base method's
# (exact on its own), and every trainable parameter's gradient is averaged
class ExtrasLinearProbeCoOp(DecoupledHeadMixin, CoOp):
    """CoOp with DePT."""

    torchrun_ready = True


class ExtrasLinearProbeCoCoOp(DecoupledHeadMixin, CoCoOp):
    """CoCoOp with DePT (each image's own text features train the probe)."""

    torchrun_ready = True


class ExtrasLinearProbeKgCoOp(DecoupledHeadMixin, KgCoOp):
    """KgCoOp with DePT: ``R = W * L_kg`` on the text features before normalising."""

    torchrun_ready = True

    def other_loss_terms(self, output, images, labels):
        loss_kg = knowledge_guided_loss(output.text_raw, self.model.handcrafted_text_features)
        return self.method_cfg.W * loss_kg, {"loss_kg": loss_kg.item()}


class ExtrasLinearProbeMaPLe(DecoupledHeadMixin, MaPLe):
    """MaPLe with DePT."""

    torchrun_ready = True


class ExtrasLinearProbePromptSRC(DecoupledHeadMixin, PromptSRC):
    """PromptSRC with DePT (this project's pairing: the official code has none):
    ``R`` = PromptSRC's L_SCL; GPA averages the prompts, not the head."""

    torchrun_ready = True

    def other_loss_terms(self, output, images, labels):
        scl = self.scl_terms(output, images)
        return scl.total, {"loss_scl_text": scl.text.item(),
                           "loss_scl_image": scl.image.item(),
                           "loss_scl_logits": scl.logits.item()}


#: pairing -> base trainer name
PAIRINGS = {"ExtrasLinearProbeCoOp": "CoOp", "ExtrasLinearProbeCoCoOp": "CoCoOp",
            "ExtrasLinearProbeKgCoOp": "KgCoOp", "ExtrasLinearProbeMaPLe": "MaPLe",
            "ExtrasLinearProbePromptSRC": "PromptSRC"}

