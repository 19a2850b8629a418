"""IVLP: independent deep prompts in the text and image encoders (the
"Independent V-L Prompting" baseline of MaPLe / PromptSRC)."""

from clipwb.trainers.kit.config import add_trainer_keys, check_ivlp_keys, uses_vision_prompts
from clipwb.trainers.kit.initial_draws import ConstructionDraws
from clipwb.trainers.kit.prompt_learners import ivlp_learner
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP


def extend_cfg(cfg):
    add_trainer_keys(cfg, "IVLP", {
        "N_CTX_VISION": 2,  # number of context vectors at the vision branch
        "N_CTX_TEXT": 2,  # number of context vectors at the language branch
        "CTX_INIT": "a photo of a",  # initialization words (only for language prompts)
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "PROMPT_DEPTH_VISION": 9,  # 0: no vision prompts
        "PROMPT_DEPTH_TEXT": 9,  # >= 1
    })


class IVLP(ClipPromptTrainer):
    """Independent Vision-Language Prompting."""

    cfg_key = "IVLP"
    #: torchrun: per-image cross-entropy
    torchrun_ready = True
    legacy_model_names = ("VLPromptLearner",)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_ivlp_keys(cfg.TRAINER[self.cfg_key], "TRAINER." + self.cfg_key)

    def requires_vit(self, cfg):
        return uses_vision_prompts(cfg.TRAINER[self.cfg_key])

    def construction_draws(self, cfg):
        # the official fork draws the vision and deep text prompts while CLIP is built
        return ConstructionDraws.from_ivlp_node(cfg.TRAINER[self.cfg_key])

    def build_clip_model(self, cfg, classnames, clip_model):
        learner = ivlp_learner(clip_model, classnames, cfg.TRAINER[self.cfg_key],
                               self.learnable_dtype, self.drawn)
        return PromptedCLIP(clip_model, learner)
