"""PromptSRC: self-regulating prompts (Khattak et al., "Self-regulating
Prompts: Foundational Model Adaptation without Forgetting", ICCV 2023)."""

from clipwb.trainers.kit.config import add_trainer_keys
from clipwb.trainers.self_regulating import SelfRegulatingTrainer


def extend_cfg(cfg):
    add_trainer_keys(cfg, "PROMPTSRC", {
        "N_CTX_VISION": 4,  # number of context vectors at the vision branch
        "N_CTX_TEXT": 4,  # number of context vectors at the language branch
        "CTX_INIT": "a photo of a",  # initialization words
        "PREC": "fp16",  # fp16, fp32, amp (or bf16)
        "PROMPT_DEPTH_VISION": 9,  # 0: no vision prompts
        "PROMPT_DEPTH_TEXT": 9,  # >= 1
        "TEXT_LOSS_WEIGHT": 25,
        "IMAGE_LOSS_WEIGHT": 10,
        "GPA_MEAN": 15,
        "GPA_STD": 1,
    })


class PromptSRC(SelfRegulatingTrainer):
    """Prompting with Self-regulating Constraints."""

    cfg_key = "PROMPTSRC"
    #: torchrun: L_CE and L_SCL are means over the images; GPA averages
    #: weights that are equal on every rank
    torchrun_ready = True
