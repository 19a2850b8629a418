"""CoOp: learnable text context (Zhou et al., "Learning to Prompt for
Vision-Language Models", IJCV 2022)."""

from clipwb.trainers.kit.config import add_trainer_keys, check_choice, check_min
from clipwb.trainers.kit.prompt_learners import CLASS_TOKEN_POSITIONS, coop_learner
from clipwb.trainers.kit.prompt_trainer import ClipPromptTrainer
from clipwb.trainers.kit.prompted_clip import PromptedCLIP


def extend_cfg(cfg):
    add_trainer_keys(cfg, "COOP", {
        "N_CTX": 16,  # number of context vectors
        "CSC": False,  # class-specific context
        "CTX_INIT": "",  # initialization words
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "CLASS_TOKEN_POSITION": "end",  # 'middle' or 'end' or 'front'
    })


class CoOp(ClipPromptTrainer):
    """Context Optimization (CoOp)."""

    cfg_key = "COOP"
    #: torchrun: per-image cross-entropy, so the ranks' mean is the global batch's
    torchrun_ready = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.COOP
        check_min(node.N_CTX, 1, self.cfg_name("N_CTX"))
        check_choice(node.CLASS_TOKEN_POSITION, CLASS_TOKEN_POSITIONS,
                     self.cfg_name("CLASS_TOKEN_POSITION"))

    def build_clip_model(self, cfg, classnames, clip_model):
        return PromptedCLIP(clip_model, coop_learner(clip_model, classnames, cfg.TRAINER.COOP,
                                                        self.learnable_dtype))
