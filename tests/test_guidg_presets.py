"""GuiDG's two presets: ours (the default configs) and "official" (the
``*_official`` configs, ``PRESET=official`` in scripts/guidg/). Both run a few
steps on the offline toy DG world through train.py's config path; each
official-side training behaviour is checked directly: the learning rate of
every iteration (cosine stepped per batch, wrapping past T_max), the
validation epochs, the kept last batch, RandAugment, the WiSE-FT reset, the
test batch (few-shot and full data), the full-data transforms (DomainBed's or
CLIPood's, pixel by pixel), the fp16-master step and its BMA (the official
update, bit for bit); a run with the official options resumes exactly; the
scripts pick the official configs of both steps."""
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from clipwb.engine import build_trainer, set_random_seed
from clipwb.errors import ConfigError
from clipwb.trainers.guidg.full_data import domainbed_transforms
from clipwb.trainers.kit.lr_schedule import build_lr_schedule
from tests.dg_kit import make_dg_cfg, write_expert
from tests.dg_layouts import write_domainbed
from tests.test_guidg_units import HandWrittenOfficialBMA
from tests.test_resume import check_exact_resume
from tests.test_scripts import calls, flag, stub_environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["plain", "textured", "noisy"]
N_CLASSES = 25


def cosine(base, k, t_max):
    """Official ``CosineAnnealingLR`` (eta_min 0) after ``k`` steps, closed form."""
    return base * (1 + math.cos(math.pi * k / t_max)) / 2


def toy_cfg(toy_data, out, trainer, folder, config, *opts, sources=SOURCES, target="sketch",
            pool="B"):
    """train.py's config: toy_dg.yaml, configs/trainers/FOLDER/CONFIG.yaml, opts."""
    import train

    argv = ["--root", toy_data, "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "toy_dg.yaml"),
            "--config-file", os.path.join(REPO, "configs", "trainers", folder, config + ".yaml"),
            "--output-dir", str(out),
            "DATASET.SOURCE_DOMAINS", str(list(sources)), "DATASET.TARGET_DOMAINS",
            str([target]), "DATASET.DG_TRAIN_POOL", pool, "DATASET.NUM_SHOTS", "4"]
    return train.setup_cfg(train.build_parser().parse_args(argv + [str(o) for o in opts]))


def record(trainer):
    """Record the learning rate and batch size of every step, and every
    validation that ran (epoch) while ``trainer`` trains."""
    seen = {"lr": [], "batch": [], "val": []}
    step, test = trainer.forward_backward, trainer.test

    def forward_backward(batch):
        seen["lr"].append(trainer.get_current_lr())
        seen["batch"].append(len(batch["label"]))
        return step(batch)

    def recorded_test(split=None):
        result = test(split)
        if split == "val" and result != -math.inf:
            seen["val"].append(trainer.epoch)
        return result

    trainer.forward_backward, trainer.test = forward_backward, recorded_test
    return seen


def train(cfg):
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    seen = record(trainer)
    trainer.train()
    return trainer, seen


# ------------------------------------------------------------------ the schedule

def test_cosine_iter_equals_the_official_cosine_and_wraps_past_t_max():
    from clipwb.engine import get_cfg_default
    import clipwb.trainers

    cfg = get_cfg_default()
    clipwb.trainers.extend_cfg(cfg)
    cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.COSINE_T_MAX_ITERS = "cosine_iter", 4
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_lr_schedule(optim, cfg.OPTIM, iters_per_epoch=3)
    lrs = []
    for _ in range(11):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    assert lrs == pytest.approx([cosine(0.1, k, 4) for k in range(11)], abs=1e-12)
    assert lrs[4] == pytest.approx(0, abs=1e-12) and lrs[8] == pytest.approx(0.1)  # wraps
    cfg.OPTIM.COSINE_T_MAX_ITERS = 0  # the run's own step count
    assert build_lr_schedule(optim, cfg.OPTIM, iters_per_epoch=3).T_max == 3 * cfg.OPTIM.MAX_EPOCH
    cfg.OPTIM.WARMUP_EPOCH = 1
    with pytest.raises(ConfigError, match="set OPTIM.WARMUP_EPOCH -1"):
        build_lr_schedule(optim, cfg.OPTIM, iters_per_epoch=3)
    cfg.OPTIM.LR_SCHEDULER = "cosine_itr"
    with pytest.raises(ConfigError, match="'cosine_itr' is not valid: use one of single_step, "
                                          "multi_step, cosine, cosine_iter"):
        build_lr_schedule(optim, cfg.OPTIM, iters_per_epoch=3)


# ------------------------------------------------------------------ step 1 on the toy world

def test_step1_official_preset_on_the_toy_world(toy_data, tmp_path):
    # pool A of one domain: 4 shots x 25 classes = 100 images, batch 32
    cfg = toy_cfg(toy_data, tmp_path / "official", "GuiDGExpert", "GuiDGExpert", "toy_official",
                  "OPTIM.COSINE_T_MAX_ITERS", 6, sources=["plain"], target="plain", pool="A")
    assert (cfg.TRAINER.GUIDGEXPERT.VAL_EVERY, cfg.TRAINER.GUIDGEXPERT.DROP_LAST) == (2, False)
    trainer, seen = train(cfg)
    # drop_last False: 3 full batches and the last 4 images, every epoch
    assert len(trainer.train_loader_x) == 4
    assert seen["batch"] == [32, 32, 32, 4] * 5
    # the LR of every iteration is the per-batch cosine, rising again after T_max = 6
    assert seen["lr"] == pytest.approx([cosine(0.02, k, 6) for k in range(20)], abs=1e-12)
    assert seen["lr"][12] == pytest.approx(0.02)
    # validated at epochs 0, 2, 4 only; the best of those is the deployed model
    assert seen["val"] == [0, 2, 4]
    best = torch.load(os.path.join(cfg.OUTPUT_DIR, "prompt_learner", "model-best.pth.tar"),
                      weights_only=False)
    assert best["epoch"] - 1 in seen["val"]


def test_step1_official_expert_is_a_float16_context_trained_by_plain_sgd(toy_data, tmp_path,
                                                                         monkeypatch):
    """The official expert (phase1.py): CLIP in float16, the context a float16
    parameter, plain SGD (no momentum, no weight decay), no GradScaler: the
    official YAML's PREC fp16, kept on the CPU with PREC_ON_CPU=1."""
    import yaml

    with open(os.path.join(REPO, "configs", "trainers", "GuiDGExpert",
                           "vit_b16_c16_ep31_official.yaml")) as f:
        official = yaml.safe_load(f)
    assert official["TRAINER"]["COOP"]["PREC"] == "fp16"
    assert (official["OPTIM"]["MOMENTUM"], official["OPTIM"]["WEIGHT_DECAY"]) == (0.0, 0.0)
    monkeypatch.setenv("PREC_ON_CPU", "1")
    cfg = toy_cfg(toy_data, tmp_path / "fp16", "GuiDGExpert", "GuiDGExpert", "toy_official",
                  "TRAINER.COOP.PREC", "fp16", "OPTIM.MOMENTUM", 0.0, "OPTIM.WEIGHT_DECAY", 0.0,
                  sources=["plain"], target="plain", pool="A")
    set_random_seed(1)
    trainer = build_trainer(cfg)
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.dtype == torch.float16 and trainer.scaler is None
    group = trainer.optim.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.0, 0.0)
    before, lr = ctx.detach().clone(), group["lr"]
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 1000
    grad_step = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert math.isfinite(grad_step["loss"])
    # updated in place, in float16, by plain SGD: ctx - lr * grad rounded to float16
    assert ctx.dtype == torch.float16 and ctx.grad.dtype == torch.float16
    assert not torch.equal(before, ctx.detach())
    assert torch.equal(ctx.detach(), before.add(ctx.grad, alpha=-lr))


def test_step1_official_preset_resumes_to_the_same_learning_rates(toy_data, tmp_path, capsys):
    def make(name):
        return toy_cfg(toy_data, tmp_path / name, "GuiDGExpert", "GuiDGExpert", "toy_official",
                       "OPTIM.MAX_EPOCH", 2, "OPTIM.COSINE_T_MAX_ITERS", 6,
                       "TRAIN.PRINT_FREQ", 1, sources=["plain"], target="plain", pool="A")

    trainer = check_exact_resume(capsys, make, 2, interrupt=(1, 1))
    assert trainer.sched.last_epoch == 8  # 2 epochs x 4 batches, past T_max = 6
    assert trainer.get_current_lr() == pytest.approx(cosine(0.02, 8, 6))


def test_step1_default_preset_on_the_toy_world(toy_data, tmp_path):
    cfg = toy_cfg(toy_data, tmp_path / "ours", "GuiDGExpert", "GuiDGExpert", "toy",
                  "OPTIM.MAX_EPOCH", 2, sources=["plain"], target="plain", pool="A")
    trainer, seen = train(cfg)
    assert seen["batch"] == [32, 32, 32] * 2  # Dassl's drop_last
    assert seen["val"] == [0, 1]  # every epoch
    assert seen["lr"][:3] == [0.02] * 3 and seen["lr"][3:] == [pytest.approx(0.01)] * 3


# ------------------------------------------------------------------ step 2 on the toy world

@pytest.fixture
def toy_experts(tmp_path):
    for seed, domain in enumerate(SOURCES):
        write_expert(str(tmp_path / "experts" / ("expert_" + domain)), seed=seed)
    return str(tmp_path / "experts" / "expert_{domain}")


def test_step2_official_preset_on_the_toy_world(toy_data, tmp_path, toy_experts, capsys):
    cfg = toy_cfg(toy_data, tmp_path / "official", "GuiDG", "GuiDG", "toy_official",
                  "OPTIM.MAX_EPOCH", 2, "TRAINER.GUIDG.ITERS_PER_EPOCH", 2,
                  "TRAINER.GUIDG.EXPERT_DIR", toy_experts)
    trainer, seen = train(cfg)
    out = capsys.readouterr().out
    # T_max = MAX_EPOCH x ITERS_PER_EPOCH = 4, stepped after every batch
    assert seen["lr"] == pytest.approx([cosine(2e-5, k, 4) for k in range(4)], abs=1e-15)
    transforms = trainer.train_loader_x.dataset.transform.transforms
    assert any(isinstance(t, T.RandAugment) for t in transforms)
    assert isinstance(transforms[0], T.Resize)
    assert transforms[0].interpolation == T.InterpolationMode.BICUBIC
    assert trainer.test_loader.batch_size == 24  # 3 x 8 per domain
    assert "TRAINER.GUIDG.PREC = fp16_master runs as fp32 on the CPU" in out
    assert "* accuracy:" in out


def test_official_preset_data_side_on_the_toy_world(toy_data, tmp_path, toy_experts, capsys):
    """The official YAMLs' data rows: shots drawn with seed 0 whatever the
    run's seed, DomainBed's 30/70 + 20 % split for full data, and step-2
    batches drawn with replacement; our configs keep the training seed."""
    from clipwb.engine import build_dataset

    def shots(config, seed, folder="GuiDG"):
        cfg = toy_cfg(toy_data, tmp_path / "{}{}".format(config, seed), "GuiDG", folder, config,
                      "SEED", seed)
        return sorted(item.impath for item in build_dataset(cfg).train_x)

    assert shots("toy_official", 1) == shots("toy_official", 2)
    assert shots("toy", 1) != shots("toy", 2)
    # full data (NUM_SHOTS 0): the expert trains on 30 % of its domain, step 2 on 70 %
    expert = build_dataset(toy_cfg(toy_data, tmp_path / "full_a", "GuiDGExpert", "GuiDGExpert",
                                   "toy_official", "DATASET.NUM_SHOTS", 0,
                                   sources=["plain"], target="plain", pool="A"))
    step2 = build_dataset(toy_cfg(toy_data, tmp_path / "full_b", "GuiDG", "GuiDG",
                                  "toy_official", "DATASET.NUM_SHOTS", 0))
    per_domain = len(expert.train_x) + len(expert.val)
    assert len(expert.train_x) == per_domain - int(per_domain * 0.7)
    assert len(step2.train_x) == len(SOURCES) * int(per_domain * 0.7)
    assert len(step2.test) == int(per_domain * 0.2)
    assert not {i.impath for i in expert.train_x} & {i.impath for i in step2.train_x}
    # step 2 draws its per-domain batches with replacement
    cfg = toy_cfg(toy_data, tmp_path / "sampling", "GuiDG", "GuiDG", "toy_official",
                  "OPTIM.MAX_EPOCH", 1, "TRAINER.GUIDG.ITERS_PER_EPOCH", 1,
                  "TRAINER.GUIDG.EXPERT_DIR", toy_experts)
    trainer = build_trainer(cfg)
    assert trainer.train_loader_x.batch_sampler.replacement
    assert "(drawn with replacement)" in capsys.readouterr().out


IMAGENET_MEAN_STD = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CLIP_MEAN_STD = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])


def plain_by_hand(img, choice, size=32):
    """The full-data test transform written out: DomainBed's squashes the
    image to size x size (ImageNet mean / std); CLIPood's patch resizes the
    shorter side to ``size`` and crops the center (CLIP's mean / std)."""
    if choice == "domainbed":
        img, (mean, std) = img.resize((size, size), Image.BILINEAR), IMAGENET_MEAN_STD
    else:
        w, h = img.size
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
        img = img.resize(new, Image.BILINEAR).crop((left, top, left + size, top + size))
        mean, std = CLIP_MEAN_STD
    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    return (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_full_data_transforms_are_domainbeds_or_clipoods_patch():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 48, 3), np.uint8))
    for choice in ("domainbed", "clipood"):
        augment, plain = domainbed_transforms((32, 32), choice)
        assert torch.allclose(plain(img), plain_by_hand(img, choice), atol=1e-6)
        steps = augment.transforms
        assert (steps[0].size, steps[0].scale) == ((32, 32), (0.7, 1.0))
        assert isinstance(steps[1], T.RandomHorizontalFlip) and isinstance(steps[-2], T.ToTensor)
        assert list(steps[-1].mean) == (IMAGENET_MEAN_STD if choice == "domainbed"
                                        else CLIP_MEAN_STD)[0]
        assert augment(img).shape == (3, 32, 32)
    # DomainBed's own adds colour jitter (0.3 each) and a random grayscale (p 0.1)
    jitter, gray = domainbed_transforms((32, 32), "domainbed")[0].transforms[2:4]
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
        (0.7, 1.3), (0.7, 1.3), (0.7, 1.3), (-0.3, 0.3))
    assert gray.p == 0.1
    assert len(domainbed_transforms((32, 32), "clipood")[0].transforms) == 4
    # the two plain transforms differ on a non-square image (squash against crop)
    assert not torch.allclose(plain_by_hand(img, "domainbed"),
                              domainbed_transforms((32, 32), "clipood")[1](img), atol=0.5)


@pytest.mark.parametrize("choice", ["domainbed", "clipood"])
def test_official_full_data_reads_images_as_the_official_domainbed_datasets(
        choice, toy_data, tmp_path, toy_experts):
    """NUM_SHOTS 0 under the official preset: the sources' images (train and
    val) augmented, the target's plain, tested in batches of the per-domain
    batch; step 1 validates its expert on augmented images too."""
    augment, _ = domainbed_transforms((32, 32), choice)
    step2 = build_trainer(toy_cfg(toy_data, tmp_path / "step2", "GuiDG", "GuiDG", "toy_official",
                                  "DATASET.NUM_SHOTS", 0, "DATASET.DG_FULL_DATA_TRANSFORMS",
                                  choice, "TRAINER.GUIDG.EXPERT_DIR", toy_experts))
    assert repr(step2.train_loader_x.dataset.transform) == repr(augment)  # not RandAugment
    assert step2.val_loader.dataset.transform is step2.train_loader_x.dataset.transform
    assert step2.test_loader.batch_size == 8 and len(step2.test_loader.dataset) == 200
    batch = next(iter(step2.test_loader))
    assert len(batch["img"]) == 8
    for img, path in zip(batch["img"], batch["impath"]):
        assert torch.allclose(img, plain_by_hand(Image.open(path).convert("RGB"), choice),
                              atol=1e-6)
    expert = build_trainer(toy_cfg(toy_data, tmp_path / "step1", "GuiDGExpert", "GuiDGExpert",
                                   "toy_official", "DATASET.NUM_SHOTS", 0,
                                   "DATASET.DG_FULL_DATA_TRANSFORMS", choice,
                                   sources=["plain"], target="plain", pool="A"))
    for loader in (expert.train_loader_x, expert.val_loader):
        assert repr(loader.dataset.transform) == repr(augment)
    path = expert.test_loader.dataset.data_source[0].impath
    assert torch.allclose(expert.test_loader.dataset[0]["img"],
                          plain_by_hand(Image.open(path).convert("RGB"), choice), atol=1e-6)


def test_our_full_data_keeps_its_transforms_and_test_batch(toy_data, tmp_path, toy_experts):
    # (few-shot official runs keep RandAugment and 3 x 8: test_step2_official_preset...)
    ours = build_trainer(toy_cfg(toy_data, tmp_path / "ours", "GuiDG", "GuiDG", "toy",
                                 "DATASET.NUM_SHOTS", 0, "TRAINER.GUIDG.EXPERT_DIR", toy_experts))
    for loader in (ours.train_loader_x, ours.test_loader):
        assert not any(isinstance(t, T.ColorJitter) for t in loader.dataset.transform.transforms)
    assert ours.test_loader.batch_size == 100


def test_step2_default_preset_on_the_toy_world(toy_data, tmp_path, toy_experts):
    cfg = toy_cfg(toy_data, tmp_path / "ours", "GuiDG", "GuiDG", "toy",
                  "OPTIM.MAX_EPOCH", 2, "TRAINER.GUIDG.ITERS_PER_EPOCH", 2,
                  "TRAINER.GUIDG.EXPERT_DIR", toy_experts)
    trainer, seen = train(cfg)
    assert seen["lr"] == [2e-5] * 2 + [pytest.approx(1e-5)] * 2  # per epoch
    assert not any(isinstance(t, T.RandAugment)
                   for t in trainer.train_loader_x.dataset.transform.transforms)
    assert trainer.test_loader.batch_size == 100


# ------------------------------------------------------------------ step 2 on a tiny PACS

@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    return write_domainbed(tmp_path_factory.mktemp("dg_presets"), "PACS", n_classes=3,
                           n_per_class=7, domains=["art_painting", "cartoon", "photo"])


@pytest.mark.parametrize("config", ["vit_b16_clipood_official", "vit_b16_erm_wf_official",
                                    "vit_b16_ueo_wf_official"])
def test_official_domainbed_configs_test_in_batches_of_48_and_16_on_full_data(
        config, pacs, tiny_clip_path, tmp_path):
    experts = tmp_path / "experts"
    for seed, domain in enumerate(["art_painting", "cartoon"]):
        write_expert(str(experts / ("expert_" + domain)), seed=seed)
    cfg = make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / "out",
                      ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}")],
                      config=config)
    assert cfg.OPTIM.LR_SCHEDULER == "cosine_iter"
    assert cfg.TRAINER.GUIDG.WISE_RESET == (config != "vit_b16_clipood_official")
    assert build_trainer(cfg).test_loader.batch_size == 48
    # full data: the per-domain batch, 16 (the official engine.py 115)
    full = make_dg_cfg("GuiDG", pacs, tiny_clip_path, tmp_path / "full",
                       ["TRAINER.GUIDG.EXPERT_DIR", str(experts / "expert_{domain}"),
                        "DATASET.NUM_SHOTS", "0"], config=config)
    assert build_trainer(full).test_loader.batch_size == 16


@pytest.mark.parametrize("reset", [True, False])
def test_wise_reset_trains_on_from_the_mix(reset, pacs, tiny_clip_path, tmp_path):
    cfg = make_dg_cfg("ERMWiSEFT", pacs, tiny_clip_path, tmp_path / "out", [
        "TRAINER.ERMWISEFT.WISE_RESET", reset, "TRAINER.ERMWISEFT.BATCH_PER_DOMAIN", "2",
        "OPTIM.MAX_EPOCH", "2"])
    torch.manual_seed(0)
    trainer = build_trainer(cfg)
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches, trainer.epoch = 0, 1000, 0
    for _ in range(2):
        trainer.forward_backward(batch)
    visual = trainer.model.visual
    trained = {k: v.clone() for k, v in visual.state_dict().items()}
    trainer.after_epoch()
    mix = {k: 0.5 * trainer.zero_shot_state[k] + 0.5 * trained[k] for k in trained}
    evaluated = trainer.eval_encoder.encoder.state_dict()
    assert all(torch.allclose(evaluated[k], mix[k]) for k in mix)
    want = mix if reset else trained
    assert all(torch.allclose(visual.state_dict()[k], want[k]) for k in want)
    assert not all(torch.equal(trained[k], mix[k]) for k in mix)


def test_wise_reset_with_the_bma_baseline_is_one_clear_error(pacs, tiny_clip_path, tmp_path):
    cfg = make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / "out",
                      ["TRAINER.CLIPOOD.WISE_RESET", "True"])
    with pytest.raises(ConfigError, match="TRAINER.CLIPOOD.WISE_RESET True .* set it False"):
        build_trainer(cfg)


def test_fp16_master_keeps_half_weights_and_a_float32_step(pacs, tiny_clip_path, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.setenv("PREC_ON_CPU", "1")  # the GPU path, on the CPU
    cfg = make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / "out", [
        "TRAINER.CLIPOOD.PREC", "fp16_master", "TRAINER.CLIPOOD.BATCH_PER_DOMAIN", "2"])
    torch.manual_seed(0)
    trainer = build_trainer(cfg)
    assert "half-precision weights, float32 optimizer step" in capsys.readouterr().out
    visual = trainer.model.visual
    assert visual.conv1.weight.dtype == torch.float16
    before = visual.conv1.weight.detach().clone()
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 0, 1000
    official = HandWrittenOfficialBMA(visual, trainer.total_steps, cfg.TRAINER.CLIPOOD.BMA_BETA)
    losses = []
    for _ in range(3):
        losses.append(trainer.forward_backward(batch)["loss"])
        official.update(visual)
        # the average after every step: the official update of the half-precision encoder
        got = list(trainer.eval_encoder.encoder.parameters())
        assert all(torch.equal(g, w) for g, w in zip(got, official.params))
    assert {p.dtype for p in got} == {torch.float16, torch.float32}
    assert all(math.isfinite(v) for v in losses)
    assert visual.conv1.weight.dtype == torch.float16  # back to half after the step
    assert not torch.equal(visual.conv1.weight, before)
    state = trainer.optim.state[visual.conv1.weight]
    assert state["exp_avg"].dtype == torch.float32 and state["exp_avg_sq"].dtype == torch.float32


def test_fp16_master_runs_as_fp32_on_the_cpu(pacs, tiny_clip_path, tmp_path, capsys):
    cfg = make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / "out",
                      ["TRAINER.CLIPOOD.PREC", "fp16_master"])
    trainer = build_trainer(cfg)
    assert trainer.precision == "fp32"
    assert trainer.model.visual.conv1.weight.dtype == torch.float32
    assert "TRAINER.CLIPOOD.PREC = fp16_master runs as fp32 on the CPU" in capsys.readouterr().out


def test_official_step2_options_resume_exactly(pacs, tiny_clip_path, tmp_path, capsys):
    """cosine_iter past T_max, RandAugment and the WiSE-FT reset, interrupted in
    epoch 2 and resumed: the same steps (learning rates included) and weights."""
    opts = ["OPTIM.LR_SCHEDULER", "cosine_iter", "OPTIM.COSINE_T_MAX_ITERS", "4",
            "TRAINER.ERMWISEFT.WISE_RESET", "True", "TRAINER.ERMWISEFT.TRAIN_TRANSFORM",
            "randaugment", "TRAINER.ERMWISEFT.BATCH_PER_DOMAIN", "3",
            "TRAINER.ERMWISEFT.ITERS_PER_EPOCH", "3", "OPTIM.MAX_EPOCH", "3",
            "TRAIN.PRINT_FREQ", "1", "SEED", "1"]

    def make(name):
        return make_dg_cfg("ERMWiSEFT", pacs, tiny_clip_path, tmp_path / name, opts)

    trainer = check_exact_resume(capsys, make, 3, interrupt=(1, 1))
    assert trainer.sched.last_epoch == 9
    assert trainer.get_current_lr() == pytest.approx(cosine(1e-4, 9, 4), abs=1e-15)


def test_fp16_master_resumes_exactly_with_its_float32_optimizer_state(
        pacs, tiny_clip_path, tmp_path, capsys, monkeypatch):
    """The AdamW state loads cast to its parameters' dtype: it must meet the
    float32 weights it was saved with, or the resumed steps drift."""
    monkeypatch.setenv("PREC_ON_CPU", "1")
    opts = ["TRAINER.CLIPOOD.PREC", "fp16_master", "TRAINER.CLIPOOD.BATCH_PER_DOMAIN", "2",
            "TRAINER.CLIPOOD.ITERS_PER_EPOCH", "2", "OPTIM.MAX_EPOCH", "2",
            "TRAIN.PRINT_FREQ", "1", "SEED", "1"]

    def make(name):
        return make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / name, opts)

    trainer = check_exact_resume(capsys, make, 2, interrupt=(1, 0))
    visual = trainer.model.visual
    assert visual.conv1.weight.dtype == torch.float16
    assert trainer.optim.state[visual.conv1.weight]["exp_avg"].dtype == torch.float32


def test_bad_step1_preset_values_are_one_clear_error(toy_data, tmp_path):
    def cfg(key, value):
        return toy_cfg(toy_data, tmp_path / "out", "GuiDGExpert", "GuiDGExpert",
                       "toy_official", key, value, sources=["plain"], target="plain", pool="A")

    with pytest.raises(ConfigError, match="TRAINER.GUIDGEXPERT.VAL_EVERY = 0 must be a number"):
        build_trainer(cfg("TRAINER.GUIDGEXPERT.VAL_EVERY", 0))
    with pytest.raises(ConfigError, match="for config key: TRAINER.GUIDGEXPERT.DROP_LAST"):
        cfg("TRAINER.GUIDGEXPERT.DROP_LAST", "no")


def test_bad_preset_values_are_one_clear_error(pacs, tiny_clip_path, tmp_path):
    for key, value, message in [
            ("TRAINER.CLIPOOD.TRAIN_TRANSFORM", "autoaugment",
             "TRAINER.CLIPOOD.TRAIN_TRANSFORM = 'autoaugment' is not valid"),
            ("TRAINER.CLIPOOD.PREC", "fp8", "TRAINER.CLIPOOD.PREC = 'fp8' is not valid"),
            ("OPTIM.COSINE_T_MAX_ITERS", "-2", "OPTIM.COSINE_T_MAX_ITERS = -2 must be"),
            ("TRAINER.CLIPOOD.FULL_DATA_TEST_BATCH", "-1",
             "TRAINER.CLIPOOD.FULL_DATA_TEST_BATCH = -1 must be a number >= 0"),
            ("DATASET.DG_FULL_DATA_TRANSFORMS", "squash",
             "DATASET.DG_FULL_DATA_TRANSFORMS = 'squash' is not valid: use domainbed .* or "
             "clipood")]:
        cfg = make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / "out",
                          ["OPTIM.LR_SCHEDULER", "cosine_iter", key, value])
        with pytest.raises(ConfigError, match=message):
            build_trainer(cfg)


# ------------------------------------------------------------------ the scripts

@pytest.fixture
def stub_env(tmp_path):
    return stub_environment(tmp_path, ("pacs", "imagenet_dg"))


def run(env, script, *args, **extra):
    return subprocess.run(["bash", os.path.join(REPO, "scripts", "guidg", script)] + list(args),
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=dict(env, **extra))


def config_names(env):
    return [os.path.relpath(flag(argv, "--config-file"), "configs/trainers")
            for argv in calls(env)]


def test_preset_official_picks_the_official_configs_of_both_steps(stub_env):
    proc = run(stub_env, "dg.sh", "pacs", "sketch", "1", PRESET="official")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = config_names(stub_env)
    assert names == ["GuiDGExpert/vit_b16_c16_ep31_official.yaml"] * 3 + [
        "GuiDG/vit_b16_clipood_official.yaml"]
    assert "/GuiDG/vit_b16_clipood_official/sketch/seed1" in flag(calls(stub_env)[-1],
                                                                   "--output-dir")
    os.remove(stub_env["STUB_CALLS"])
    proc = run(stub_env, "dg.sh", "pacs", "sketch", "1", PRESET="official",
               CFG="vit_b16_erm_wf")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert config_names(stub_env)[-1] == "GuiDG/vit_b16_erm_wf_official.yaml"


def test_default_preset_keeps_our_configs(stub_env):
    proc = run(stub_env, "dg.sh", "pacs", "sketch", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert config_names(stub_env) == ["GuiDGExpert/vit_b16_c16_ep31.yaml"] * 3 + [
        "GuiDG/vit_b16_clipood.yaml"]


def test_imagenet_dg_official_tests_in_batches_of_36(stub_env):
    proc = run(stub_env, "imagenet_dg.sh", "imagenet_r", "1", PRESET="official")
    assert proc.returncode == 0, proc.stderr[-2000:]
    step2 = calls(stub_env)[-1]
    assert step2[step2.index("DATALOADER.TEST.BATCH_SIZE") + 1] == "36"
    assert config_names(stub_env)[-1] == "GuiDG/vit_b16_clipood_official.yaml"


def test_an_unknown_preset_is_one_clear_error(stub_env):
    proc = run(stub_env, "dg.sh", "pacs", "sketch", "1", PRESET="paper")
    assert proc.returncode != 0
    assert "PRESET=paper is not a preset: use ours (the default) or official" in proc.stderr
