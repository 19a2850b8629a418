"""Every shipped YAML loads through train.py's setup_cfg, with the original values."""
import glob
import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_YAMLS = sorted(glob.glob(os.path.join(REPO, "configs", "datasets", "*.yaml")))
TRAINER_YAMLS = sorted(glob.glob(os.path.join(REPO, "configs", "trainers", "**", "*.yaml"),
                                 recursive=True))
# config files the CoOp / MaPLe / PromptSRC scripts name
REQUIRED = [
    "CoOp/vit_b16.yaml", "CoOp/vit_b16_ep50.yaml", "CoOp/vit_b16_ep100.yaml",
    "CoOp/vit_b16_ctxv1.yaml", "CoOp/vit_b16_ep50_ctxv1.yaml", "CoOp/rn50.yaml",
    "CoOp/rn50_ep50.yaml", "CoOp/rn50_ep100.yaml",
    "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "CoCoOp/vit_b16_c16_ep10_batch1.yaml",
    "IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml",
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml",
    "PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml",
]


def rel(path):
    return os.path.relpath(path, REPO)


@pytest.fixture(scope="module")
def train():
    import train as module

    return module


def setup_cfg(train, config_file="", dataset_config_file="", trainer="", opts=()):
    argv = []
    if dataset_config_file:
        argv += ["--dataset-config-file", dataset_config_file]
    if config_file:
        argv += ["--config-file", config_file]
    if trainer:
        argv += ["--trainer", trainer]
    args = train.build_parser().parse_args(argv + ["--root", "data", "--seed", "1",
                                                   "--output-dir", "out"] + list(opts))
    return train.setup_cfg(args)


def trainer_yaml(name):
    return os.path.join(REPO, "configs", "trainers", name)


def test_required_trainer_configs_are_shipped():
    for name in REQUIRED:
        assert os.path.isfile(trainer_yaml(name)), name


@pytest.mark.parametrize("path", DATASET_YAMLS + TRAINER_YAMLS, ids=rel)
def test_yaml_is_a_mapping_of_upper_case_sections(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict) and data
    assert all(key.isupper() for key in data), sorted(data)


@pytest.mark.parametrize("path", DATASET_YAMLS, ids=rel)
def test_dataset_config_loads(train, path):
    cfg = setup_cfg(train, dataset_config_file=path)
    with open(path) as f:
        assert cfg.DATASET.NAME == yaml.safe_load(f)["DATASET"]["NAME"]
    assert cfg.DATASET.ROOT == "data" and cfg.SEED == 1 and cfg.OUTPUT_DIR == "out"


@pytest.mark.parametrize("path", TRAINER_YAMLS, ids=rel)
def test_trainer_config_loads_with_the_script_options(train, path):
    folder = os.path.basename(os.path.dirname(path))
    cfg = setup_cfg(train, config_file=path, trainer=folder,
                    opts=["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"])
    assert cfg.TRAINER.NAME == folder
    assert cfg.DATASET.NUM_SHOTS == 16 and cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    name = os.path.basename(path)
    toy = name in ("toy.yaml", "toy_official.yaml", "toy_parity.yaml")  # the toy CLIP
    assert cfg.INPUT.SIZE == ((32, 32) if toy else (224, 224))
    # GuiDG's official preset resizes as the official code (torchvision's bilinear)
    official = name.endswith("_official.yaml")
    assert cfg.INPUT.INTERPOLATION == ("bilinear" if official else "bicubic")
    assert list(cfg.INPUT.PIXEL_MEAN) == [0.48145466, 0.4578275, 0.40821073]
    if name == "toy_parity.yaml" and folder == "ProGrad":  # its fork has no RRCROP_SCALE
        assert list(cfg.INPUT.TRANSFORMS) == ["random_flip", "normalize"]
    else:
        assert list(cfg.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]
    assert cfg.MODEL.BACKBONE.NAME in (("ToyCLIP",) if toy else ("ViT-B/16", "ViT-B/32", "RN50", "RN101",
                                                                "ViT-L/14"))


def test_promptsrc_values(train):
    cfg = setup_cfg(train, trainer_yaml("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
                    trainer="PromptSRC")
    assert cfg.OPTIM.NAME == "sgd" and cfg.OPTIM.LR == pytest.approx(0.0025)
    assert cfg.OPTIM.MAX_EPOCH == 20 and cfg.OPTIM.LR_SCHEDULER == "cosine"
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE) == (1, "constant")
    assert cfg.OPTIM.WARMUP_CONS_LR == pytest.approx(1e-5)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4 and cfg.DATALOADER.TEST.BATCH_SIZE == 100
    p = cfg.TRAINER.PROMPTSRC
    assert (p.N_CTX_VISION, p.N_CTX_TEXT, p.CTX_INIT, p.PREC) == (4, 4, "a photo of a", "fp16")
    assert (p.PROMPT_DEPTH_VISION, p.PROMPT_DEPTH_TEXT) == (9, 9)
    assert (p.TEXT_LOSS_WEIGHT, p.IMAGE_LOSS_WEIGHT) == (25, 10)
    assert (p.GPA_MEAN, p.GPA_STD) == (15, 1)
    xd = setup_cfg(train, trainer_yaml("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets.yaml"))
    assert (xd.TRAINER.PROMPTSRC.GPA_MEAN, xd.TRAINER.PROMPTSRC.GPA_STD) == (6, 10)
    assert xd.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION == 3 and xd.OPTIM.MAX_EPOCH == 20
    fs = setup_cfg(train, trainer_yaml("PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot.yaml"))
    assert fs.OPTIM.MAX_EPOCH == 50
    assert (fs.TRAINER.PROMPTSRC.GPA_MEAN, fs.TRAINER.PROMPTSRC.GPA_STD) == (30, 30)


def test_maple_ivlp_cocoop_coop_values(train):
    maple = setup_cfg(train, trainer_yaml("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"))
    assert (maple.TRAINER.MAPLE.N_CTX, maple.TRAINER.MAPLE.PROMPT_DEPTH) == (2, 9)
    assert maple.OPTIM.LR == pytest.approx(0.0035) and maple.OPTIM.MAX_EPOCH == 5
    xd = setup_cfg(train, trainer_yaml("MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml"))
    assert xd.TRAINER.MAPLE.PROMPT_DEPTH == 3
    assert xd.OPTIM.LR == pytest.approx(0.0026) and xd.OPTIM.MAX_EPOCH == 2
    ivlp = setup_cfg(train, trainer_yaml("IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml"))
    i = ivlp.TRAINER.IVLP
    assert (i.N_CTX_VISION, i.N_CTX_TEXT, i.PROMPT_DEPTH_VISION, i.PROMPT_DEPTH_TEXT) == (4, 4, 9, 9)
    assert ivlp.OPTIM.LR == pytest.approx(0.0025) and ivlp.OPTIM.MAX_EPOCH == 20
    cocoop = setup_cfg(train, trainer_yaml("CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"))
    assert (cocoop.TRAINER.COCOOP.N_CTX, cocoop.TRAINER.COCOOP.CTX_INIT) == (4, "a photo of a")
    assert cocoop.DATALOADER.TRAIN_X.BATCH_SIZE == 1 and cocoop.OPTIM.MAX_EPOCH == 10
    assert cocoop.OPTIM.LR == pytest.approx(0.002)
    coop = setup_cfg(train, trainer_yaml("CoOp/vit_b16_ep50.yaml"))
    assert coop.OPTIM.MAX_EPOCH == 50 and coop.DATALOADER.TRAIN_X.BATCH_SIZE == 32
    assert coop.TRAINER.COOP.CTX_INIT == ""  # the trainer's default: no init words
    ctxv1 = setup_cfg(train, trainer_yaml("CoOp/vit_b16_ctxv1.yaml"))
    assert ctxv1.TRAINER.COOP.CTX_INIT == "a photo of a" and ctxv1.OPTIM.MAX_EPOCH == 200
    rn50 = setup_cfg(train, trainer_yaml("CoOp/rn50.yaml"))
    assert rn50.MODEL.BACKBONE.NAME == "RN50" and rn50.OPTIM.MAX_EPOCH == 200


def test_command_line_options_override_the_yaml(train):
    cfg = setup_cfg(train, trainer_yaml("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
                    opts=["OPTIM.MAX_EPOCH", "1", "INPUT.SIZE", "(32, 32)",
                          "TRAINER.PROMPTSRC.GPA_MEAN", "45"])
    assert cfg.OPTIM.MAX_EPOCH == 1 and cfg.INPUT.SIZE == (32, 32)
    assert cfg.TRAINER.PROMPTSRC.GPA_MEAN == 45


def test_unknown_key_is_a_clear_config_error(train, tmp_path):
    from clipwb.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAINER:\n  PROMPTSRC:\n    GPA_MEANN: 3\n")
    with pytest.raises(ConfigError, match="GPA_MEANN"):
        setup_cfg(train, str(bad))
