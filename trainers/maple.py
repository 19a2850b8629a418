"""MaPLe: text prompts coupled to vision prompts by linear maps (Khattak et al.,
"MaPLe: Multi-modal Prompt Learning", CVPR 2023)."""

from clipwb.trainers.kit.config import add_trainer_keys, check_min
from clipwb.trainers.kit.prompt_learners import maple_learner
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP


def extend_cfg(cfg):
    add_trainer_keys(cfg, "MAPLE", {
        "N_CTX": 2,  # number of context vectors
        "CTX_INIT": "a photo of a",  # initialization words
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "PROMPT_DEPTH": 9,  # max 12, min 1 (1: shallow MaPLe, J=1)
    })


class MaPLe(ClipPromptTrainer):
    """Multi-modal Prompt Learning."""

    cfg_key = "MAPLE"
    #: torchrun: per-image cross-entropy
    torchrun_ready = True
    legacy_model_names = ("MultiModalPromptLearner",)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_min(cfg.TRAINER.MAPLE.N_CTX, 1, self.cfg_name("N_CTX"))
        check_min(cfg.TRAINER.MAPLE.PROMPT_DEPTH, 1, self.cfg_name("PROMPT_DEPTH"))

    def requires_vit(self, cfg):
        return True

    def build_clip_model(self, cfg, classnames, clip_model):
        return PromptedCLIP(clip_model, maple_learner(clip_model, classnames, cfg.TRAINER.MAPLE,
                                                         self.learnable_dtype))
