"""ISP: Integrated Structural Prompt learning (Wang, Xu, Jiang, Luo,
"Integrated Structural Prompt Learning for Vision-Language Models",
arXiv 2507.05677, 2025).

Sources. Only the abstract, the opening of the arXiv HTML (v1) and the
overview-figure caption (chatpaper.com/paper/159178) could be read; a search
for the method section (arXiv HTML v1/v2, deeppaper / scholarfeed / chatpaper
summaries, code and issue indexes) found no equations and no official code.
What the paper states, and this trainer follows:

- learnable prompts are concatenated with the text and the visual tokens,
  and the frozen encoders run with the "integrated structural prompt";
- a self-structural and a cross-structural prompt module model the relations
  between learnable prompts and frozen tokens within / across modalities;
- a sample probing module weights the loss of each sample by its difficulty,
  computed from the frozen CLIP's prediction probability;
- settings: base-to-new, cross-dataset and domain generalization.

Everything else is the project's reconstruction (docs/METHODS.md, "ISP"),
each choice behind a ``TRAINER.ISP`` key: IVLP deep prompts (N_CTX_*,
PROMPT_DEPTH_*), gated attention modules (SELF_*, CROSS_*;
:mod:`trainers.isp_modules`), difficulty ``1 - p(y|x)`` and mean-1 weights
(PROBE_*; :mod:`clipwb.trainers.isp.losses`), and PromptSRC's L1 / KL stability
terms (TEXT_LOSS_WEIGHT, IMAGE_LOSS_WEIGHT, KL_LOSS_WEIGHT; 0 = off). With
the module gates at zero (their initial value) ISP's logits equal IVLP's.
"""
import torch

from clipwb.engine import compute_accuracy
from clipwb.engine.distributed import gather_batch, rank_share
from clipwb.errors import ConfigError, UserInputError

from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_ivlp_keys, check_min, uses_vision_prompts
from clipwb.trainers.kit.frozen_clip import ZeroShotCLIP, class_text_features
from clipwb.trainers.kit.initial_draws import ConstructionDraws
from clipwb.trainers.isp.learner import isp_learner, settings_for_checkpoint
from clipwb.trainers.isp.losses import (PROBE_SOURCES, PROBE_WEIGHTINGS, probe_weights, sample_difficulty,
                         weighted_cross_entropy)
from clipwb.trainers.isp.modules import CROSS_MODES, check_heads, check_maple_coupling
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP
from clipwb.trainers.kit.scl_losses import scl_image_loss, scl_logits_loss, scl_text_loss
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES


def extend_cfg(cfg):
    add_trainer_keys(cfg, "ISP", {
        # deep prompts (IVLP keys)
        "N_CTX_VISION": 2,  # vision prompt tokens per layer (0: no vision prompts)
        "N_CTX_TEXT": 2,  # text prompt tokens per layer
        "CTX_INIT": "a photo of a",  # initialization words (text layer 0)
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "PROMPT_DEPTH_VISION": 9,  # 0: no vision prompts
        "PROMPT_DEPTH_TEXT": 9,  # >= 1
        # self-structural module: deep prompts attend to their layer's frozen tokens
        "SELF_STRUCT": True,
        "SELF_WIDTH": 64,  # attention width
        "SELF_HEADS": 1,
        # cross-structural module: text <-> vision prompts of each layer
        "CROSS_STRUCT": True,
        "CROSS_MODE": "cross_attention",  # cross_attention, linear (gated P_v + Linear(P_t)) or maple (P_v = Linear(P_t))
        "CROSS_WIDTH": 64,
        "CROSS_HEADS": 1,
        # sample probing: per-sample cross-entropy coefficients
        "PROBE": True,
        "PROBE_SOURCE": "frozen",  # frozen, prompted, product or frozen_once
        "PROBE_WEIGHTING": "linear",  # linear (1 + alpha d, mean 1) or softmax (B softmax(d / T))
        "PROBE_ALPHA": 1.0,
        "PROBE_TEMPERATURE": 1.0,
        # stability regularisation against the frozen CLIP (0 = off)
        "TEXT_LOSS_WEIGHT": 25.0,  # L1 of text features
        "IMAGE_LOSS_WEIGHT": 10.0,  # L1 of image features
        "KL_LOSS_WEIGHT": 1.0,  # KL to the zero-shot logits
    })


def check_isp_keys(node, prefix="TRAINER.ISP"):
    """Validate the ``TRAINER.ISP`` keys; ConfigError names the key and a fix."""
    check_ivlp_keys(node, prefix)
    for key in ("SELF_STRUCT", "CROSS_STRUCT", "PROBE"):
        if not isinstance(node[key], bool):
            raise ConfigError("{}.{} = {!r} must be True or False.".format(prefix, key, node[key]))
    check_heads(node.SELF_WIDTH, node.SELF_HEADS, prefix + ".SELF_WIDTH / SELF_HEADS")
    check_heads(node.CROSS_WIDTH, node.CROSS_HEADS, prefix + ".CROSS_WIDTH / CROSS_HEADS")
    check_choice(node.CROSS_MODE, CROSS_MODES, prefix + ".CROSS_MODE")
    check_choice(node.PROBE_SOURCE, PROBE_SOURCES, prefix + ".PROBE_SOURCE")
    check_choice(node.PROBE_WEIGHTING, PROBE_WEIGHTINGS, prefix + ".PROBE_WEIGHTING")
    check_min(node.PROBE_ALPHA, 0, prefix + ".PROBE_ALPHA")
    if not isinstance(node.PROBE_TEMPERATURE, (int, float)) or node.PROBE_TEMPERATURE <= 0:
        raise ConfigError("{}.PROBE_TEMPERATURE = {!r} must be a number > 0.".format(
            prefix, node.PROBE_TEMPERATURE))
    for key in ("TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT", "KL_LOSS_WEIGHT"):
        check_min(node[key], 0, "{}.{}".format(prefix, key))
    if node.CROSS_STRUCT and not uses_vision_prompts(node):
        raise ConfigError(
            "{0}.CROSS_STRUCT = True needs vision prompts, but {0}.N_CTX_VISION = {1} and "
            "{0}.PROMPT_DEPTH_VISION = {2}: set both > 0, or {0}.CROSS_STRUCT False.".format(
                prefix, node.N_CTX_VISION, node.PROMPT_DEPTH_VISION))
    if node.CROSS_STRUCT and node.CROSS_MODE == "maple":
        check_maple_coupling(node.N_CTX_TEXT, node.PROMPT_DEPTH_TEXT, node.N_CTX_VISION,
                             node.PROMPT_DEPTH_VISION, prefix)


class ISP(ClipPromptTrainer):
    """Integrated Structural Prompt learning (see the module docstring)."""

    cfg_key = "ISP"
    #: torchrun: the probe weights are normalised over the global batch
    #: (:meth:`probe`); every other loss is a mean over the batch's images
    torchrun_ready = True
    #: the official MaPLe / IVLP runs' folders: their prompts load with the
    #: ISP-only modules off (docs/METHODS.md, ISP)
    legacy_model_names = ("MultiModalPromptLearner", "VLPromptLearner")
    #: templates averaged into the frozen text features (PromptSRC's)
    teacher_templates = PROMPTSRC_TEMPLATES

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_isp_keys(cfg.TRAINER.ISP)

    def requires_vit(self, cfg):
        return uses_vision_prompts(cfg.TRAINER.ISP)

    def missing_weights_message(self, model_path, lacking, unexpected):
        """A checkpoint without ISP's modules (a MaPLe or IVLP run, or ISP with
        them off): one sentence naming the modules and the setting that loads it."""
        what, settings = settings_for_checkpoint(lacking, unexpected)
        if not settings:
            return super().missing_weights_message(model_path, lacking, unexpected)
        return ('The checkpoint "{}" has no weights for ISP\'s {}: it was trained without '
                "them; load it with TRAINER.ISP.{}.".format(
                    model_path, what, " and TRAINER.ISP.".join(settings)))

    def construction_draws(self, cfg):
        # IVLP-style prompts: drawn while CLIP is built, as the official fork
        # draws them (MaPLe-coupled ones are drawn by the learner)
        node = cfg.TRAINER.ISP
        if node.CROSS_STRUCT and node.CROSS_MODE == "maple":
            return None
        return ConstructionDraws.from_ivlp_node(node)

    def build_clip_model(self, cfg, classnames, clip_model):
        model = PromptedCLIP(clip_model, isp_learner(clip_model, classnames, cfg.TRAINER.ISP,
                                                     self.learnable_dtype, self.drawn))
        # The frozen CLIP (prompts off): class text features once, from the
        # raw mean over the templates (as PromptSRC's teacher).
        text_features = class_text_features(model.text_encoder, classnames,
                                            self.teacher_templates, normalize_each=False)
        model.zero_shot = ZeroShotCLIP(model.image_encoder, text_features, model.logit_scale)
        return model

    #: 1 - p_frozen(y|x) of every training image (PROBE_SOURCE frozen_once)
    _difficulty = None
    #: dataset indices of the batch being trained on
    _batch_index = None

    def needs_frozen_forward(self):
        node = self.method_cfg
        return ((node.PROBE and node.PROBE_SOURCE in ("frozen", "product"))
                or node.IMAGE_LOSS_WEIGHT > 0 or node.KL_LOSS_WEIGHT > 0)

    def parse_batch_train(self, batch):
        self._batch_index = batch.get("index")
        return super().parse_batch_train(batch)

    def difficulty_table(self):
        """``1 - p_frozen(y_i | x_i)`` [N] of every training image under the
        test transform, computed on first use and kept for the run."""
        if self._difficulty is None:
            teacher = self.model.zero_shot
            features, labels = self.frozen_train_features(teacher.image_encoder)
            self._difficulty = sample_difficulty(labels, teacher.logits_from_features(features))
            print("ISP: sample difficulty of {} training images from the frozen CLIP "
                  "(PROBE_SOURCE frozen_once)".format(len(labels)))
        return self._difficulty

    def probe(self, labels, logits, frozen_logits):
        """Per-sample CE coefficients of the **global** batch (None when
        probing is off): under torchrun every rank's difficulties are
        gathered (in batch order) and normalised together, as one process
        normalises the whole batch; a rank weights its own slice
        (``rank_share``). The weights carry no gradient, so the gather needs
        none."""
        node = self.method_cfg
        if not node.PROBE:
            return None
        if node.PROBE_SOURCE == "frozen_once":
            if self._batch_index is None:
                raise UserInputError(
                    "TRAINER.ISP.PROBE_SOURCE frozen_once needs the dataset index of each "
                    "training sample (batch['index'], as Dassl's DatasetWrapper gives); this "
                    "batch has none. Use PROBE_SOURCE frozen.")
            difficulty = self.difficulty_table()[self._batch_index.to(labels.device)]
        else:
            difficulty = sample_difficulty(labels, frozen_logits, logits, node.PROBE_SOURCE)
        return probe_weights(gather_batch(difficulty), node.PROBE_WEIGHTING, node.PROBE_ALPHA,
                             node.PROBE_TEMPERATURE)

    def compute_loss(self, images, labels):
        node = self.method_cfg
        output = self.model.forward_features(images)
        frozen_image = frozen_logits = None
        if self.needs_frozen_forward():
            frozen_image, frozen_logits = self.model.zero_shot.forward_with_features(images)
        weights = self.probe(labels, output.logits, frozen_logits)
        loss_ce = weighted_cross_entropy(output.logits, labels,
                                         None if weights is None else rank_share(weights))
        zero = output.logits.new_zeros(())
        loss_text = loss_image = loss_kl = zero
        if node.TEXT_LOSS_WEIGHT > 0:
            loss_text = scl_text_loss(output.text_features, self.model.zero_shot.text_features,
                                      node.TEXT_LOSS_WEIGHT)
        if node.IMAGE_LOSS_WEIGHT > 0:
            loss_image = scl_image_loss(output.image_features, frozen_image,
                                        node.IMAGE_LOSS_WEIGHT)
        if node.KL_LOSS_WEIGHT > 0:
            loss_kl = scl_logits_loss(output.logits, frozen_logits) * node.KL_LOSS_WEIGHT
        loss = loss_ce + loss_text + loss_image + loss_kl
        summary = {
            "loss": loss.item(),
            "acc": compute_accuracy(output.logits, labels)[0].item(),
            "loss_ce": loss_ce.item(),
            "loss_text": loss_text.item(),
            "loss_image": loss_image.item(),
            "loss_kl": loss_kl.item(),
        }
        if weights is not None:
            summary["probe_w_max"] = weights.max().item()
        return loss, summary

    @torch.no_grad()
    def gate_values(self):
        """Current values of the structural gates (a list of floats)."""
        learner = self.model.prompt_learner
        return [v for g in learner.gate_parameters() for v in g.detach().flatten().tolist()]
