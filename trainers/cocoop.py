"""CoCoOp: context shifted by a meta-net of the image feature (Zhou et al.,
"Conditional Prompt Learning for Vision-Language Models", CVPR 2022).
The image-conditioned prompts of a batch go through the text encoder together."""

from clipwb.trainers.kit.config import add_trainer_keys, check_min
from clipwb.trainers.kit.prompt_learners import cocoop_learner
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP


def extend_cfg(cfg):
    add_trainer_keys(cfg, "COCOOP", {
        "N_CTX": 16,  # number of context vectors
        "CTX_INIT": "",  # initialization words
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
    })


class CoCoOp(ClipPromptTrainer):
    """Conditional Context Optimization (CoCoOp)."""

    cfg_key = "COCOOP"
    #: torchrun: per-image cross-entropy (each image's own text features)
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_min(cfg.TRAINER.COCOOP.N_CTX, 1, self.cfg_name("N_CTX"))

    def build_clip_model(self, cfg, classnames, clip_model):
        return PromptedCLIP(clip_model, cocoop_learner(clip_model, classnames, cfg.TRAINER.COCOOP,
                                                          self.learnable_dtype))
