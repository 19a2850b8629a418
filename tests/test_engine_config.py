"""Default config, YAML merging, clean_cfg and registries of the engine."""
import pytest
from yacs.config import CfgNode

import clipwb.engine
from clipwb.engine import Registry, build_trainer, get_cfg_default
from clipwb.errors import ConfigError


def test_backend_and_exports():
    assert clipwb.engine.BACKEND in ("dassl", "builtin")
    for name in clipwb.engine.__all__:
        assert hasattr(clipwb.engine, name), name


def test_default_values_match_dassl():
    cfg = get_cfg_default()
    assert isinstance(cfg, CfgNode)
    expected = {
        "VERSION": 1, "OUTPUT_DIR": "./output", "RESUME": "", "SEED": -1,
        "USE_CUDA": True, "VERBOSE": True,
        "INPUT.SIZE": (224, 224), "INPUT.INTERPOLATION": "bilinear",
        "INPUT.TRANSFORMS": (), "INPUT.NO_TRANSFORM": False,
        "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
        "INPUT.PIXEL_STD": [0.229, 0.224, 0.225],
        "INPUT.CROP_PADDING": 4, "INPUT.RRCROP_SCALE": (0.08, 1.0),
        "INPUT.CUTOUT_N": 1, "INPUT.CUTOUT_LEN": 16, "INPUT.GN_STD": 0.15,
        "INPUT.RANDAUGMENT_N": 2, "INPUT.RANDAUGMENT_M": 10,
        "INPUT.COLORJITTER_H": 0.1, "INPUT.RGS_P": 0.2, "INPUT.GB_P": 0.5,
        "INPUT.GB_K": 21,
        "DATASET.ROOT": "", "DATASET.NAME": "", "DATASET.SOURCE_DOMAINS": (),
        "DATASET.NUM_LABELED": -1, "DATASET.NUM_SHOTS": -1,
        "DATASET.VAL_PERCENT": 0.1, "DATASET.STL10_FOLD": -1,
        "DATASET.ALL_AS_UNLABELED": False,
        "DATALOADER.NUM_WORKERS": 4, "DATALOADER.K_TRANSFORMS": 1,
        "DATALOADER.RETURN_IMG0": False,
        "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler",
        "DATALOADER.TRAIN_X.BATCH_SIZE": 32, "DATALOADER.TRAIN_X.N_DOMAIN": 0,
        "DATALOADER.TRAIN_X.N_INS": 16, "DATALOADER.TRAIN_U.SAME_AS_X": True,
        "DATALOADER.TEST.SAMPLER": "SequentialSampler",
        "DATALOADER.TEST.BATCH_SIZE": 32,
        "MODEL.INIT_WEIGHTS": "", "MODEL.BACKBONE.NAME": "",
        "MODEL.BACKBONE.PRETRAINED": True, "MODEL.HEAD.ACTIVATION": "relu",
        "MODEL.HEAD.BN": True, "MODEL.HEAD.DROPOUT": 0.0,
        "OPTIM.NAME": "adam", "OPTIM.LR": 0.0003, "OPTIM.WEIGHT_DECAY": 5e-4,
        "OPTIM.MOMENTUM": 0.9, "OPTIM.SGD_DAMPNING": 0,
        "OPTIM.SGD_NESTEROV": False, "OPTIM.RMSPROP_ALPHA": 0.99,
        "OPTIM.ADAM_BETA1": 0.9, "OPTIM.ADAM_BETA2": 0.999,
        "OPTIM.STAGED_LR": False, "OPTIM.NEW_LAYERS": (),
        "OPTIM.BASE_LR_MULT": 0.1, "OPTIM.LR_SCHEDULER": "single_step",
        "OPTIM.STEPSIZE": (-1,), "OPTIM.GAMMA": 0.1, "OPTIM.MAX_EPOCH": 10,
        "OPTIM.WARMUP_EPOCH": -1, "OPTIM.WARMUP_TYPE": "linear",
        "OPTIM.WARMUP_CONS_LR": 1e-5, "OPTIM.WARMUP_MIN_LR": 1e-5,
        "OPTIM.WARMUP_RECOUNT": True,
        "TRAIN.CHECKPOINT_FREQ": 0, "TRAIN.PRINT_FREQ": 10,
        "TRAIN.COUNT_ITER": "train_x",
        "TEST.EVALUATOR": "Classification", "TEST.PER_CLASS_RESULT": False,
        "TEST.COMPUTE_CMAT": False, "TEST.NO_TEST": False,
        "TEST.SPLIT": "test", "TEST.FINAL_MODEL": "last_step",
        "TRAINER.NAME": "", "TRAINER.FIXMATCH.CONF_THRE": 0.95,
        "TRAINER.MIXMATCH.RAMPUP": 20000, "TRAINER.DOMAINMIX.TYPE": "crossdomain",
    }
    for dotted, value in expected.items():
        node = cfg
        for part in dotted.split("."):
            node = node[part]
        assert node == value, dotted
        assert type(node) is type(value), dotted


def test_defaults_are_fresh_copies():
    a = get_cfg_default()
    a.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_dassl_yaml_merges(tmp_path):
    # A CoOp-style trainer config (Dassl keys only).
    path = tmp_path / "coop.yaml"
    path.write_text(
        "DATALOADER:\n  TRAIN_X:\n    BATCH_SIZE: 32\n  TEST:\n    BATCH_SIZE: 100\n"
        "  NUM_WORKERS: 8\n"
        "INPUT:\n  SIZE: (224, 224)\n  INTERPOLATION: \"bicubic\"\n"
        "  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]\n"
        "  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]\n"
        "  TRANSFORMS: [\"random_resized_crop\", \"random_flip\", \"normalize\"]\n"
        "OPTIM:\n  NAME: \"sgd\"\n  LR: 0.002\n  MAX_EPOCH: 200\n"
        "  LR_SCHEDULER: \"cosine\"\n  WARMUP_EPOCH: 1\n  WARMUP_TYPE: \"constant\"\n"
        "  WARMUP_CONS_LR: 1e-5\n"
        "TRAIN:\n  PRINT_FREQ: 5\n"
        "MODEL:\n  BACKBONE:\n    NAME: \"ViT-B/16\"\n")
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert cfg.OPTIM.LR == 0.002 and cfg.OPTIM.NAME == "sgd"
    assert tuple(cfg.INPUT.TRANSFORMS) == ("random_resized_crop", "random_flip",
                                           "normalize")
    assert cfg.INPUT.SIZE == (224, 224)
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"


def test_unknown_key_gives_yacs_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  LEARNING_RATE: 0.1\n")
    cfg = get_cfg_default()
    with pytest.raises(KeyError, match="OPTIM.LEARNING_RATE"):
        cfg.merge_from_file(str(path))
    # merge_from_list reports unknown keys with an AssertionError
    with pytest.raises((KeyError, AssertionError), match="TRAIN.NOPE"):
        get_cfg_default().merge_from_list(["TRAIN.NOPE", "1"])


def test_clean_cfg_keeps_only_the_trainer():
    cfg = get_cfg_default()
    clipwb.engine.clean_cfg(cfg, "fixmatch")
    assert set(cfg.TRAINER.keys()) == {"NAME", "FIXMATCH"}


def test_registry_register_get_and_miss():
    reg = Registry("TOY")

    @reg.register()
    class Alpha:
        pass

    def beta():
        return 2

    reg.register(beta)
    assert reg.get("Alpha") is Alpha and reg.get("beta")() == 2
    assert reg.registered_names() == ["Alpha", "beta"]
    with pytest.raises(KeyError) as info:
        reg.get("Gamma")
    message = str(info.value)
    assert "Gamma" in message
    if clipwb.engine.BACKEND == "builtin":  # real Dassl does not list the names
        assert "Alpha" in message and "beta" in message
    with pytest.raises(KeyError, match="already registered"):
        reg.register(beta)


def test_build_trainer_unknown_name_lists_names():
    from tests.engine_testkit import register_toys

    register_toys()
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "NoSuchTrainer"
    with pytest.raises(ValueError) as info:
        build_trainer(cfg)
    assert "NoSuchTrainer" in str(info.value) and "ToyTrainer" in str(info.value)
    if clipwb.engine.BACKEND == "builtin":
        assert isinstance(info.value, ConfigError)
