"""Zero-shot CLIP (CoOp's ZeroshotCLIP / ZeroshotCLIP2): nothing is trained.

Use with ``--eval-only`` (``--model-dir`` may be empty). ZeroshotCLIP uses the
dataset's CoOp template; ZeroshotCLIP2 ensembles the 7 selected ImageNet
templates (plus the dataset's own template except on ImageNet).
"""

from clipwb.trainers.kit.frozen_clip import ZeroShotCLIP, class_text_features
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder, PromptedTextEncoder
from clipwb.trainers.kit.templates import custom_template, ensemble_templates, fill_template


def extend_cfg(cfg):
    """The zero-shot trainers add no config keys (as in CoOp)."""
    return cfg


class ZeroshotCLIP(ClipPromptTrainer):
    """Frozen CLIP with CoOp's hand-crafted template per dataset."""

    learnable_module = None
    #: torchrun: nothing trains; the test batches are shared and gathered
    torchrun_ready = True

    def check_cfg(self, cfg):
        pass

    def requested_precision(self):
        # CoOp's zero-shot CLIP keeps OpenAI's fp16 weights on the GPU.
        return "fp16", "{} precision".format(type(self).__name__)

    def templates(self, dataset_name):
        template = custom_template(dataset_name)
        return [template]

    def build_clip_model(self, cfg, classnames, clip_model):
        templates = self.templates(cfg.DATASET.NAME)
        if len(templates) == 1:
            print("Prompts: {}".format([fill_template(templates[0], c) for c in classnames]))
        else:
            print("Prompt ensembling (n={})".format(len(templates)))
        text_features = class_text_features(
            PromptedTextEncoder(clip_model), classnames, templates, normalize_each=True)
        return ZeroShotCLIP(PromptedImageEncoder(clip_model), text_features,
                            clip_model.logit_scale)

    def train(self):
        print("{} has no learnable weights: evaluating the frozen model".format(
            type(self).__name__))
        return self.test()


class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling over CoOp's selected ImageNet templates."""

    torchrun_ready = True  # (as ZeroshotCLIP: evaluation only)

    def templates(self, dataset_name):
        return ensemble_templates(dataset_name)
