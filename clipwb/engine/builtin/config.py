"""Dassl 0.6.3's default configuration tree (``get_cfg_default``, ``clean_cfg``).

Every key, type and default value equals Dassl's ``dassl/config/defaults.py``,
so a YAML file written for Dassl (or CoOp, MaPLe, PromptSRC) merges unchanged.
Types matter: yacs refuses to merge an ``int`` into a ``float`` key.
"""
from yacs.config import CfgNode

__all__ = ["CfgNode", "get_cfg_default", "clean_cfg"]

_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]


def _input():
    return {
        "SIZE": (224, 224),
        "INTERPOLATION": "bilinear",   # bilinear | bicubic | nearest
        "TRANSFORMS": (),              # names accepted by build_transform
        "NO_TRANSFORM": False,         # True: no train/test transform at all
        "PIXEL_MEAN": list(_IMAGENET_MEAN),
        "PIXEL_STD": list(_IMAGENET_STD),
        "CROP_PADDING": 4,             # random_crop
        "RRCROP_SCALE": (0.08, 1.0),   # random_resized_crop
        "CUTOUT_N": 1,
        "CUTOUT_LEN": 16,
        "GN_MEAN": 0.0,                # gaussian_noise
        "GN_STD": 0.15,
        "RANDAUGMENT_N": 2,
        "RANDAUGMENT_M": 10,
        "COLORJITTER_B": 0.4,
        "COLORJITTER_C": 0.4,
        "COLORJITTER_S": 0.4,
        "COLORJITTER_H": 0.1,
        "RGS_P": 0.2,                  # randomgrayscale probability
        "GB_P": 0.5,                   # gaussian_blur probability
        "GB_K": 21,                    # gaussian_blur kernel size (odd)
    }


def _dataset():
    return {
        "ROOT": "",
        "NAME": "",
        "SOURCE_DOMAINS": (),
        "TARGET_DOMAINS": (),
        "NUM_LABELED": -1,
        "NUM_SHOTS": -1,
        "VAL_PERCENT": 0.1,
        "STL10_FOLD": -1,
        "CIFAR_C_TYPE": "",
        "CIFAR_C_LEVEL": 1,
        "ALL_AS_UNLABELED": False,
    }


def _loader(sampler):
    return {"SAMPLER": sampler, "BATCH_SIZE": 32, "N_DOMAIN": 0, "N_INS": 16}


def _dataloader():
    train_u = dict(_loader("RandomSampler"), SAME_AS_X=True)
    return {
        "NUM_WORKERS": 4,
        "K_TRANSFORMS": 1,     # augment each training image K times
        "RETURN_IMG0": False,  # also return the un-augmented image
        "TRAIN_X": _loader("RandomSampler"),
        "TRAIN_U": train_u,
        "TEST": {"SAMPLER": "SequentialSampler", "BATCH_SIZE": 32},
    }


def _model():
    return {
        "INIT_WEIGHTS": "",
        "BACKBONE": {"NAME": "", "PRETRAINED": True},
        "HEAD": {
            "NAME": "",
            "HIDDEN_LAYERS": (),
            "ACTIVATION": "relu",
            "BN": True,
            "DROPOUT": 0.0,
        },
    }


def _optim():
    return {
        "NAME": "adam",
        "LR": 0.0003,
        "WEIGHT_DECAY": 5e-4,
        "MOMENTUM": 0.9,
        "SGD_DAMPNING": 0,
        "SGD_NESTEROV": False,
        "RMSPROP_ALPHA": 0.99,
        "ADAM_BETA1": 0.9,
        "ADAM_BETA2": 0.999,
        "STAGED_LR": False,
        "NEW_LAYERS": (),
        "BASE_LR_MULT": 0.1,
        "LR_SCHEDULER": "single_step",
        "STEPSIZE": (-1,),             # -1 or 0: step size = MAX_EPOCH
        "GAMMA": 0.1,
        "MAX_EPOCH": 10,
        "WARMUP_EPOCH": -1,            # > 0 turns warmup on
        "WARMUP_TYPE": "linear",       # linear | constant
        "WARMUP_CONS_LR": 1e-5,
        "WARMUP_MIN_LR": 1e-5,
        "WARMUP_RECOUNT": True,
    }


def _dassl_trainers():
    """The sub-trees Dassl defines for its own DA / DG / SSL trainers."""
    return {
        "NAME": "",
        "MCD": {"N_STEP_F": 4},
        "MME": {"LMDA": 0.1},
        "CDAC": {
            "CLASS_LR_MULTI": 10,
            "RAMPUP_COEF": 30,
            "RAMPUP_ITRS": 1000,
            "TOPK_MATCH": 5,
            "P_THRESH": 0.95,
            "STRONG_TRANSFORMS": (),
        },
        "SE": {"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300},
        "M3SDA": {"LMDA": 0.5, "N_STEP_F": 4},
        "DAEL": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
        "CROSSGRAD": {"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5},
        "DDAIG": {
            "G_ARCH": "",
            "LMDA": 0.3,
            "CLAMP": False,
            "CLAMP_MIN": -1.0,
            "CLAMP_MAX": 1.0,
            "WARMUP": 0,
            "ALPHA": 0.5,
        },
        "DAELDG": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
        "DOMAINMIX": {"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0},
        "ENTMIN": {"LMDA": 1e-3},
        "MEANTEACHER": {"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5},
        "MIXMATCH": {
            "WEIGHT_U": 100.0,
            "TEMP": 2.0,
            "MIXUP_BETA": 0.75,
            "RAMPUP": 20000,
        },
        "FIXMATCH": {"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
    }


def _default_tree():
    return {
        "VERSION": 1,
        "OUTPUT_DIR": "./output",
        "RESUME": "",
        "SEED": -1,            # negative: do not fix the seed
        "USE_CUDA": True,
        "VERBOSE": True,
        "INPUT": _input(),
        "DATASET": _dataset(),
        "DATALOADER": _dataloader(),
        "MODEL": _model(),
        "OPTIM": _optim(),
        "TRAIN": {
            "CHECKPOINT_FREQ": 0,      # <= 0: save only the last epoch
            "PRINT_FREQ": 10,          # batches between progress lines
            "COUNT_ITER": "train_x",   # train_x | train_u | smaller_one
        },
        "TEST": {
            "EVALUATOR": "Classification",
            "PER_CLASS_RESULT": False,
            "COMPUTE_CMAT": False,     # saves OUTPUT_DIR/cmat.pt
            "NO_TEST": False,
            "SPLIT": "test",           # test | val
            "FINAL_MODEL": "last_step",  # last_step | best_val
        },
        "TRAINER": _dassl_trainers(),
    }


def get_cfg_default():
    """Return a fresh, mutable copy of Dassl's default config."""
    return CfgNode(_default_tree())


def clean_cfg(cfg, trainer):
    """Drop every ``TRAINER.<X>`` sub-tree except ``NAME`` and ``trainer``'s own.

    Only affects what ``print(cfg)`` shows (as in Dassl).
    """
    keep = {"NAME", trainer.upper()}
    for key in list(cfg.TRAINER.keys()):
        if key not in keep:
            cfg.TRAINER.pop(key, None)
