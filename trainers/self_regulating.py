"""PromptSRC's training scheme as a reusable base trainer.

IVLP prompts (keys N_CTX_TEXT, N_CTX_VISION, CTX_INIT, PROMPT_DEPTH_TEXT,
PROMPT_DEPTH_VISION), the frozen CLIP as a teacher (text features averaged
over PromptSRC's 60 templates, computed once), the self-consistency losses
(weights TEXT_LOSS_WEIGHT, IMAGE_LOSS_WEIGHT) and Gaussian prompt aggregation
(GPA_MEAN, GPA_STD). Methods extending PromptSRC (e.g. DiSa) subclass it with
their own ``cfg_key`` and extend :meth:`compute_loss`.
"""
import torch.nn.functional as F

from clipwb.engine import compute_accuracy

from clipwb.trainers.kit.frozen_clip import ZeroShotCLIP, teacher_text_features
from clipwb.trainers.ivlp import IVLP
from clipwb.trainers.kit.initial_draws import consume_clip_construction
from clipwb.trainers.kit.scl_losses import GaussianPromptAggregation, scl_losses
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES


class SelfRegulatingTrainer(IVLP):
    """IVLP prompts (keys checked and learner built as :class:`IVLP`'s, under
    the subclass's ``cfg_key``) + PromptSRC's L_SCL and GPA (see the module
    docstring)."""

    #: templates averaged into the frozen text features
    teacher_templates = PROMPTSRC_TEMPLATES

    def build_clip_model(self, cfg, classnames, clip_model):
        model = super().build_clip_model(cfg, classnames, clip_model)
        # The official prompt learner builds two more CLIPs for its teacher
        # after drawing its context: the generator moves on as it does there.
        consume_clip_construction(clip_model, times=2)
        # Frozen CLIP: the same encoders with prompts off; its text features
        # are computed once here, from the raw mean over the templates, in
        # float32 as the official teacher's.
        text_features = teacher_text_features(model.text_encoder, classnames,
                                              self.teacher_templates)
        model.zero_shot = ZeroShotCLIP(model.image_encoder, text_features, model.logit_scale)
        return model

    def build_model(self):
        super().build_model()
        node = self.method_cfg
        self.gpa = GaussianPromptAggregation(self.cfg.OPTIM.MAX_EPOCH, node.GPA_MEAN,
                                             node.GPA_STD, "TRAINER." + self.cfg_key)

    def scl_terms(self, output, images):
        """L_SCL terms of a prompted output against the frozen model."""
        node = self.method_cfg
        teacher = self.model.zero_shot
        frozen_image, frozen_logits = teacher.forward_with_features(images)
        return scl_losses(output, frozen_image, teacher.text_features, frozen_logits,
                          node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT)

    def compute_loss(self, images, labels):
        output = self.model.forward_features(images)
        loss_ce = F.cross_entropy(output.logits, labels)
        scl = self.scl_terms(output, images)
        loss = loss_ce + scl.total
        return loss, {
            "loss": loss.item(),
            "acc": compute_accuracy(output.logits, labels)[0].item(),
            "loss_ce": loss_ce.item(),
            "loss_scl_text": scl.text.item(),
            "loss_scl_image": scl.image.item(),
            "loss_scl_logits": scl.logits.item(),
        }

    def extra_run_state(self):
        """GPA's running sum and weight (resumed with the run state)."""
        return {"gpa_state": self.gpa.state, "gpa_total_weight": self.gpa.total_weight}

    def load_extra_run_state(self, state):
        self.gpa.state = state["gpa_state"]
        self.gpa.total_weight = state["gpa_total_weight"]

    def after_epoch(self):
        learner = self._models[self.model_name]
        self.gpa.update(learner, self.epoch)
        if (self.epoch + 1) == self.max_epoch:
            print("Using GPA model for final inference...")
            self.gpa.apply(learner)
        super().after_epoch()
