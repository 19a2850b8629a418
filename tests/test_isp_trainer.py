"""The ISP trainer on the tiny CLIP: what trains, the probed loss, a few steps
lowering the loss, checkpoints, and a real ``scripts/isp/base2new.sh`` run
(train, test, table, skip, resume)."""
import glob
import os

import pytest
import torch
import torch.nn.functional as F

from clipwb.engine import build_trainer
from clipwb.errors import ConfigError, UserInputError
from tests.dataset_layouts import write_dataset
from tests.e2e_helpers import script_python, subprocess_env
from tests.trainer_kit import make_cfg, run_script, tiny_script_yaml, write_two_class_images
from clipwb.trainers.isp.losses import weighted_cross_entropy

# this module's settings, after trainer_kit.make_cfg's common ones (the
# engine's default TRAIN.PRINT_FREQ is kept)
TEST_BATCH_SIZE = 4
MAX_EPOCH = 1
TRAINER_OPTS = ("TRAINER.ISP.PROMPT_DEPTH_TEXT", 2, "TRAINER.ISP.PROMPT_DEPTH_VISION", 2)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("isp_two_class"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path):
    def _build(*opts):
        cfg = make_cfg("ISP", tiny_clip_path, data_root, tmp_path / "out", TRAINER_OPTS + opts,
                       test_batch_size=TEST_BATCH_SIZE, max_epoch=MAX_EPOCH, print_freq=None)
        torch.manual_seed(0)
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


def test_only_the_prompt_learner_trains_and_steps_lower_the_loss(build):
    trainer = build()
    assert trainer.get_model_names() == ["prompt_learner"]
    learner = trainer.model.prompt_learner
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert all(n.startswith("prompt_learner.") for n in trainable)
    assert {"prompt_learner.ctx", "prompt_learner.vision_ctx",
            "prompt_learner.self_text.attn.gate",
            "prompt_learner.cross.to_vision.gate"} <= trainable
    assert all(p.dtype == torch.float32 for p in learner.parameters())
    assert trainer.gate_values() == [0.0] * len(trainer.gate_values())
    batch = first_batch(trainer)
    summaries = [trainer.forward_backward(batch) for _ in range(5)]
    losses = [s["loss"] for s in summaries]
    assert losses[-1] < losses[0], losses
    assert {"loss_ce", "loss_text", "loss_image", "loss_kl", "probe_w_max"} <= set(summaries[0])
    assert any(v != 0.0 for v in trainer.gate_values())  # the modules leave the IVLP start
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_probe_weights_come_from_the_frozen_model_without_a_graph(build):
    trainer = build()
    batch = first_batch(trainer)
    images, labels = trainer.parse_batch_train(batch)
    output = trainer.model.forward_features(images)
    assert output.logits.requires_grad
    frozen_logits = trainer.model.zero_shot(images)
    assert not frozen_logits.requires_grad
    weights = trainer.probe(labels, output.logits, frozen_logits)
    assert not weights.requires_grad and weights.grad_fn is None
    assert weights.mean().item() == pytest.approx(1.0)
    d = 1 - F.softmax(frozen_logits, dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    assert torch.allclose(weights, (1 + d) / (1 + d).mean(), atol=1e-6)
    order = torch.argsort(d)
    assert torch.all(weights[order][1:] >= weights[order][:-1])  # harder: larger weight
    # the loss uses them
    ce = weighted_cross_entropy(output.logits, labels, weights)
    loss, summary = trainer.compute_loss(images, labels)
    assert summary["loss_ce"] == pytest.approx(ce.item(), rel=1e-5)


def test_all_extras_off_is_plain_cross_entropy(build):
    trainer = build("TRAINER.ISP.PROBE", False, "TRAINER.ISP.TEXT_LOSS_WEIGHT", 0.0,
                    "TRAINER.ISP.IMAGE_LOSS_WEIGHT", 0.0, "TRAINER.ISP.KL_LOSS_WEIGHT", 0.0)
    assert not trainer.needs_frozen_forward()
    images, labels = trainer.parse_batch_train(first_batch(trainer))
    loss, summary = trainer.compute_loss(images, labels)
    expected = F.cross_entropy(trainer.model(images), labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert summary["loss_text"] == summary["loss_image"] == summary["loss_kl"] == 0.0


def test_difficulty_once_per_run_replaces_the_frozen_pass(build):
    """PROBE_SOURCE frozen_once (the lite config): the difficulty table is the
    frozen CLIP's 1 - p(y|x) of each training image under the test transform,
    made once; a step then runs no frozen image pass and still probes."""
    trainer = build("TRAINER.ISP.PROBE_SOURCE", "frozen_once",
                    "TRAINER.ISP.IMAGE_LOSS_WEIGHT", 0.0, "TRAINER.ISP.KL_LOSS_WEIGHT", 0.0)
    assert not trainer.needs_frozen_forward()
    teacher = trainer.model.zero_shot
    table = trainer.difficulty_table()
    data = trainer.dm.dataset.train_x
    assert table.shape == (len(data),)
    # row i is dataset item i, under the test transform (deterministic here)
    loader_items = [trainer.train_loader_x.dataset[i] for i in (0, len(data) - 1)]
    for item, i in zip(loader_items, (0, len(data) - 1)):
        with torch.no_grad():
            p = F.softmax(teacher(item["img"][None]), dim=1)[0, item["label"]]
        assert table[i].item() == pytest.approx(1 - p.item(), abs=1e-5)
    assert trainer.difficulty_table() is table  # kept for the run
    image_passes = []
    handle = teacher.image_encoder.register_forward_hook(lambda *a: image_passes.append(1))
    batch = first_batch(trainer)
    summaries = [trainer.forward_backward(batch) for _ in range(4)]
    handle.remove()
    assert len(image_passes) == 4  # the prompted image pass only, no frozen one
    assert summaries[-1]["loss"] < summaries[0]["loss"]
    images, labels = trainer.parse_batch_train(batch)
    output = trainer.model.forward_features(images)
    weights = trainer.probe(labels, output.logits, None)
    d = table[batch["index"]]
    assert torch.allclose(weights, (1 + d) / (1 + d).mean(), atol=1e-6)
    del batch["index"]
    trainer.parse_batch_train(batch)
    with pytest.raises(UserInputError, match="PROBE_SOURCE frozen_once needs the dataset index"):
        trainer.probe(labels, output.logits, None)


def test_checkpoint_round_trip(build, tmp_path):
    trainer = build()
    trainer.forward_backward(first_batch(trainer))
    trainer.save_model(0, str(tmp_path / "ckpt"))
    images = next(iter(trainer.test_loader))["img"]
    with torch.no_grad():
        expected = trainer.model_inference(images)
    fresh = build()
    fresh.load_model(str(tmp_path / "ckpt"), epoch=1)
    with torch.no_grad():
        assert torch.allclose(fresh.model_inference(images), expected, atol=1e-6)


def test_maple_coupling_mode_trains_and_round_trips(build, tmp_path):
    trainer = build("TRAINER.ISP.CROSS_MODE", "maple")
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert {"prompt_learner.ctx", "prompt_learner.proj.weight",
            "prompt_learner.deep_proj.0.weight"} <= trainable
    assert not any(".vision_ctx" in n or ".cross." in n for n in trainable)
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(5)]
    assert losses[-1] < losses[0], losses
    trainer.save_model(0, str(tmp_path / "ckpt"))
    images = next(iter(trainer.test_loader))["img"]
    with torch.no_grad():
        expected = trainer.model_inference(images)
    fresh = build("TRAINER.ISP.CROSS_MODE", "maple")
    fresh.load_model(str(tmp_path / "ckpt"), epoch=1)
    with torch.no_grad():
        assert torch.allclose(fresh.model_inference(images), expected, atol=1e-6)


# -- MaPLe and IVLP runs loaded into ISP -----------------------------------------------------
#: ISP's equivalent of MaPLe: MaPLe's coupled prompts, no self-structural blocks
ISP_AS_MAPLE = ("TRAINER.ISP.SELF_STRUCT", False, "TRAINER.ISP.CROSS_MODE", "maple")
BASELINE_OPTS = {"MaPLe": ("TRAINER.MAPLE.PROMPT_DEPTH", 2),
                 "IVLP": ("TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2)}


def official_state(name, learner_state):
    """Our learner's entries under the official code's names: the whole
    CustomCLIP's state dict (``prompt_learner.*``, frozen encoder weights).
    MaPLe: ``compound_prompts_text`` / ``compound_prompt_projections``, the
    shallow projection in fp16 as the original keeps it; IVLP: the prompts
    as ``VPT`` / ``VPT_shallow`` entries of the encoders' blocks."""
    state = {"logit_scale": torch.tensor(4.6), "image_encoder.conv1.weight": torch.zeros(8, 3),
             "text_encoder.positional_embedding": torch.zeros(77, 8)}
    for key, value in learner_state.items():
        if name == "IVLP" and key == "vision_ctx":
            state["image_encoder.VPT"] = value
        elif name == "IVLP" and key.split(".")[0] in ("text_deep", "vision_deep"):
            branch = "image" if key.startswith("vision") else "text"
            layer = int(key.split(".")[1]) + 1
            state["{}_encoder.transformer.resblocks.{}.VPT_shallow".format(branch, layer)] = value
        else:
            key = key.replace("text_deep.", "compound_prompts_text.")
            key = key.replace("deep_proj.", "compound_prompt_projections.")
            state["prompt_learner." + key] = value.half() if key.startswith("proj.") else value
    return state


@pytest.fixture
def baseline_run(tiny_clip_path, data_root, tmp_path):
    """``baseline_run(name) -> (trainer, folders)``: a MaPLe or IVLP trainer
    whose prompts moved off their initial values (noise, one step), saved as
    our run (``folders["ours"]``: ``prompt_learner/``) and as the official
    code's run (``folders["official"]``: its folder and names), epoch 1."""
    official_folder = {"MaPLe": "MultiModalPromptLearner", "IVLP": "VLPromptLearner"}

    def run(name):
        cfg = make_cfg(name, tiny_clip_path, data_root, tmp_path / name, BASELINE_OPTS[name],
                       test_batch_size=TEST_BATCH_SIZE, max_epoch=MAX_EPOCH, print_freq=None)
        torch.manual_seed(0)
        trainer = build_trainer(cfg)
        learner = trainer.model.prompt_learner
        with torch.no_grad():
            for param in learner.parameters():
                param.add_(0.2 * torch.randn_like(param))
        trainer.forward_backward(first_batch(trainer))
        ours, official = tmp_path / (name + "_ours"), tmp_path / (name + "_official")
        trainer.save_model(0, str(ours))
        (official / official_folder[name]).mkdir(parents=True)
        torch.save({"state_dict": official_state(name, learner.state_dict()), "epoch": 1,
                    "optimizer": None, "scheduler": None},
                   str(official / official_folder[name] / "model.pth.tar-1"))
        return trainer, {"ours": ours, "official": official}

    return run


@pytest.mark.parametrize("name, isp_opts", [
    ("MaPLe", ISP_AS_MAPLE),
    ("IVLP", ("TRAINER.ISP.SELF_STRUCT", False, "TRAINER.ISP.CROSS_STRUCT", False)),
])
def test_a_maple_or_ivlp_run_loads_into_isp_with_its_logits(build, baseline_run, name, isp_opts):
    baseline, folders = baseline_run(name)
    isp = build(*isp_opts)
    images = next(iter(isp.test_loader))["img"]
    with torch.no_grad():
        expected = {"ours": baseline.model_inference(images)}  # the run's own weights
        baseline.load_model(str(folders["official"]), epoch=1)  # the official file's (fp16 proj)
        expected["official"] = baseline.model_inference(images)
        assert not torch.allclose(isp.model_inference(images), expected["ours"], atol=1e-3)
        for layout in ("ours", "official"):
            for param in isp.model.prompt_learner.parameters():  # nothing left of a load before
                param.add_(torch.randn_like(param))
            isp.load_model(str(folders[layout]), epoch=1)
            assert torch.allclose(isp.model_inference(images), expected[layout], atol=1e-5), layout


def test_a_maple_run_without_isps_modules_names_the_setting(build, baseline_run):
    folder = baseline_run("MaPLe")[1]["official"]
    path = str(folder / "MultiModalPromptLearner" / "model.pth.tar-1")
    with pytest.raises(UserInputError) as err:
        build("TRAINER.ISP.CROSS_MODE", "maple").load_model(str(folder), epoch=1)
    assert str(err.value) == (
        'The checkpoint "{}" has no weights for ISP\'s self-structural blocks (self_text.*, '
        "self_vision.*): it was trained without them; load it with TRAINER.ISP.SELF_STRUCT "
        "False.".format(path))
    with pytest.raises(UserInputError) as err:  # the defaults: IVLP prompts, both modules
        build().load_model(str(folder), epoch=1)
    assert str(err.value) == (
        'The checkpoint "{}" has no weights for ISP\'s cross-structural module, independent '
        "vision prompts, self-structural blocks (cross.*, self_text.*, self_vision.*, "
        "vision_ctx, vision_deep.*): it was trained without them; load it with "
        "TRAINER.ISP.SELF_STRUCT False and TRAINER.ISP.CROSS_STRUCT True, CROSS_MODE maple "
        "(N_CTX_VISION = N_CTX_TEXT, PROMPT_DEPTH_VISION = PROMPT_DEPTH_TEXT).".format(path))


def test_bad_key_is_a_config_error(build):
    with pytest.raises(ConfigError, match="TRAINER.ISP.PROBE_SOURCE = 'teacher'"):
        build("TRAINER.ISP.PROBE_SOURCE", "teacher")


# -- the run script, end to end on a tiny Caltech101 ---------------------------------------
TINY_YAML = tiny_script_yaml("ISP", {"N_CTX_VISION": 2, "N_CTX_TEXT": 2, "PREC": '"fp32"',
                                      "PROMPT_DEPTH_VISION": 2, "PROMPT_DEPTH_TEXT": 2})


def run_base2new(env, job="base2new.sh"):
    return run_script(env, "bash", "scripts/isp/" + job, "caltech101", "1")


def test_base2new_script_trains_tests_skips_and_resumes(tmp_path, tiny_clip_path):
    data = tmp_path / "data"
    write_dataset(str(data), "caltech101", n_classes=4, n_per_class=8)
    cfg_file = tmp_path / "isp_tiny.yaml"
    cfg_file.write_text(TINY_YAML)
    out = tmp_path / "output"
    env = subprocess_env(CFG=str(cfg_file), BACKBONE=tiny_clip_path, DATA=str(data),
                         OUTPUT=str(out), **script_python())
    proc = run_base2new(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = "caltech101/shots_16/ISP/isp_tiny/seed1"
    train_dir = out / "base2new" / "train_base" / run
    test_dir = out / "base2new" / "test_new" / run
    assert (train_dir / "prompt_learner" / "model.pth.tar-2").is_file()
    assert "* accuracy:" in (test_dir / "log.txt").read_text()
    assert "Base-to-novel: ISP / isp_tiny / 16 shots" in proc.stdout
    assert any(line.startswith("caltech101") for line in proc.stdout.splitlines())

    # everything exists: the second run skips both jobs
    proc = run_base2new(env)
    assert proc.returncode == 0, proc.stderr
    assert "The results exist at {}, skipping".format(train_dir) in proc.stdout
    assert "The results exist at {}, skipping".format(test_dir) in proc.stdout

    # an interrupted training run (epoch 1 saved only) resumes in its folder
    os.remove(str(train_dir / "prompt_learner" / "model.pth.tar-2"))
    (train_dir / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    proc = run_base2new(env, "base2new_train.sh")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Previous epoch: 1" in proc.stdout
    assert "epoch [2/2]" in proc.stdout and "epoch [1/2]" not in proc.stdout
    assert (train_dir / "prompt_learner" / "model.pth.tar-2").is_file()
    assert len(glob.glob(str(train_dir / "log.txt*"))) == 2
