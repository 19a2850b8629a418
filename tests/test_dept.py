"""DePT: the cwT (FiLM) layer, the probe and the loss against hand-computed
values, the official test-time rules (base / new / all on ImageNet), weight 0
= the base method, training steps, the staged learning rates, checkpoints
(with the ImageNet-A / -R clipping), the shipped configs and the toy script."""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from clipwb.engine import build_trainer
from clipwb.errors import UserInputError
from clipwb.trainers.dept import PAIRINGS
from clipwb.trainers.kit.decoupled_head import (DecoupledHead, FiLM, decoupled_loss,
                                                fused_logits, imagenet_subset_rows,
                                                uses_base_head)
from tests.trainer_kit import REPO, make_cfg, write_two_class_images

N_CTX = {"CoOp": ("TRAINER.COOP.N_CTX", 4), "KgCoOp": ("TRAINER.COOP.N_CTX", 4),
         "CoCoOp": ("TRAINER.COCOOP.N_CTX", 2), "MaPLe": ("TRAINER.MAPLE.PROMPT_DEPTH", 2),
         "PromptSRC": ("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2)}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("tiny_two_class"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path):
    def _build(name, *opts, output_dir=None, subsample="base"):
        base = PAIRINGS.get(name, name)
        torch.manual_seed(0)
        cfg = make_cfg(name, tiny_clip_path, data_root, output_dir or tmp_path / name,
                       N_CTX[base] + opts)
        cfg.defrost()
        cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # the tiny dataset keeps its two classes
        cfg.freeze()
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


# -- the pieces against hand-computed values ---------------------------------------------
def test_film_is_gamma_x_plus_beta():
    film = FiLM(3)
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 4.0, -1.0]])
    assert torch.equal(film(x), x)  # identity at the start
    with torch.no_grad():
        film.scale.copy_(torch.tensor([2.0, 0.5, -1.0]))
        film.bias.copy_(torch.tensor([0.25, 0.0, 3.0]))
    expected = torch.tensor([[2.25, -1.0, 2.5], [0.25, 2.0, 4.0]])
    assert torch.equal(film(x), expected)
    assert film(x.half()).dtype == torch.float16 and film.scale.dtype == torch.float32


def _set_probe(head, weight, bias):
    with torch.no_grad():
        head.linear_probe_proj.weight.copy_(torch.tensor(weight))
        head.linear_probe_proj.bias.copy_(torch.tensor(bias))


def test_probe_trains_on_the_labels_text_features_and_the_images():
    head = DecoupledHead(2, 3)
    _set_probe(head, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.5, -1.0])
    with torch.no_grad():
        head.film_lp_text.scale.fill_(2.0)
        head.film_lp_img.bias.fill_(1.0)
    text = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # raw, one row a class
    image = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    labels = torch.tensor([2, 0])
    logits, head_labels = head(text, image, labels)
    # rows: cwT(t_2) = (10, 12), cwT(t_0) = (2, 4), cwT(v_0) = (1, 2), cwT(v_1) = (3, 1)
    expected = torch.tensor([[10.0, 12.5, 21.0], [2.0, 4.5, 5.0],
                             [1.0, 2.5, 2.0], [3.0, 1.5, 3.0]])
    assert torch.equal(logits, expected)
    assert head_labels.tolist() == [2, 0, 2, 0]
    test_logits, none = head(text, image)  # at test: the images alone
    assert none is None and torch.equal(test_logits, expected[2:])


def test_probe_of_image_conditioned_text_takes_each_images_own_row():
    head = DecoupledHead(2, 2, film=False)
    _set_probe(head, [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    text = torch.arange(8.0).reshape(2, 2, 2)  # [B, n_cls, D]
    image = torch.zeros(2, 2)
    logits, _ = head(text, image, torch.tensor([1, 0]))
    assert torch.equal(logits[:2], torch.tensor([[2.0, 3.0], [4.0, 5.0]]))


def test_similarity_type_is_tau_cos_of_the_transformed_features():
    head = DecoupledHead(2, 2, head_type="similarity")
    assert isinstance(head.linear_probe_proj, torch.nn.Identity)
    scale = torch.tensor(math.log(10.0))
    text = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    image = torch.tensor([[1.0, 0.0]])
    logits, labels = head(text, image, torch.tensor([0]), scale)
    assert torch.allclose(logits, torch.tensor([[6.0, 0.0]]), atol=1e-5)
    assert labels.tolist() == [0]


def test_loss_and_fusion_by_hand():
    logits = torch.tensor([[2.0, 0.0]])
    head_logits = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    labels, head_labels = torch.tensor([0]), torch.tensor([0, 0])
    ce_sim = math.log(1 + math.exp(-2.0))
    ce_head = (math.log(1 + math.exp(1.0)) + math.log(2.0)) / 2
    loss, sim, lp = decoupled_loss(logits, labels, head_logits, head_labels, 0.7)
    assert sim.item() == pytest.approx(ce_sim, rel=1e-6)
    assert lp.item() == pytest.approx(ce_head, rel=1e-6)
    assert loss.item() == pytest.approx(0.3 * ce_sim + 0.7 * ce_head, rel=1e-6)
    fused = fused_logits(logits, head_logits[:1], 0.7)
    assert torch.allclose(fused, torch.tensor([[0.6, 0.7]]))
    assert torch.equal(fused_logits(logits, head_logits[:1], 0.7, fusion=False), head_logits[:1])


@pytest.mark.parametrize("subsample, name, base", [
    ("base", "Caltech101", True), ("new", "Caltech101", False), ("all", "Caltech101", False),
    ("all", "ImageNet", True), ("all", "ImageNetA", True), ("new", "ImageNet", False),
])
def test_which_rule_applies(subsample, name, base):
    assert uses_base_head(subsample, name) is base


def test_imagenet_a_probe_keeps_its_classes_rows(tmp_path):
    root = tmp_path / "imagenet-adversarial"
    (root / "imagenet-a" / "n02").mkdir(parents=True)
    (root / "imagenet-a" / "n04").mkdir()
    (root / "classnames.txt").write_text("n01 a\nn02 b\nn03 c\nn04 d\n")

    class Dataset:
        dataset_dir, image_dir = str(root), str(root / "imagenet-a")

    rows = imagenet_subset_rows(Dataset)
    assert rows == [False, True, False, True]
    source = DecoupledHead(2, 4)
    target = DecoupledHead(2, 2)
    target.source_rows = rows
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.linear_probe_proj.weight, source.linear_probe_proj.weight[[1, 3]])
    assert torch.equal(target.linear_probe_proj.bias, source.linear_probe_proj.bias[[1, 3]])
    assert torch.equal(target.film_lp_img.scale, source.film_lp_img.scale)


# -- the trainers -------------------------------------------------------------------------
def test_loss_is_the_decoupled_loss(build):
    trainer = build("ExtrasLinearProbeCoOp")
    images, labels = trainer.parse_batch_train(first_batch(trainer))
    loss, summary = trainer.compute_loss(images, labels)
    output = trainer.model.forward_features(images)
    head = trainer.model.dept_head
    text = output.text_raw[labels]
    z = torch.cat([text, output.image_raw]) @ head.linear_probe_proj.weight.t() \
        + head.linear_probe_proj.bias
    expected = 0.3 * F.cross_entropy(output.logits, labels) + 0.7 * F.cross_entropy(
        z, torch.cat([labels, labels]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert summary["loss"] == loss.item()


@pytest.mark.parametrize("name", ["CoOp", "KgCoOp", "MaPLe"])
def test_weight_zero_is_the_base_method(build, name):
    dept = build("ExtrasLinearProbe" + name, "TRAINER.LINEAR_PROBE.WEIGHT", 0.0)
    base = build(name)
    batch = first_batch(dept)
    images, labels = dept.parse_batch_train(batch)
    for (n, p), (m, q) in zip(dept.model.prompt_learner.named_parameters(),
                              base.model.prompt_learner.named_parameters()):
        assert n == m and torch.equal(p, q)
    ours, theirs = dept.compute_loss(images, labels)[0], base.compute_loss(images, labels)[0]
    if name == "KgCoOp":  # L_kg of the features before normalising, as elp_kgcoop.py
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    else:
        assert ours.item() == theirs.item()
    dept.set_model_mode("eval")
    base.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(dept.model_inference(images), base.model_inference(images))


def test_test_time_rules(build, tmp_path):
    trainer = build("ExtrasLinearProbeCoOp")
    images, _ = trainer.parse_batch_train(first_batch(trainer))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        output = trainer.model.forward_features(images)
        z = trainer.model.dept_head.linear_probe_proj(output.image_raw)  # FiLM: identity
        assert torch.allclose(trainer.model_inference(images), 0.3 * output.logits + 0.7 * z)
    probe_only = build("ExtrasLinearProbeCoOp", "TRAINER.LINEAR_PROBE.TEST_TIME_FUSION", False,
                       output_dir=tmp_path / "probe")
    probe_only.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(probe_only.model_inference(images),
                           probe_only.model.dept_head.linear_probe_proj(
                               probe_only.model.forward_features(images).image_raw))
    new = build("ExtrasLinearProbeCoOp", output_dir=tmp_path / "new", subsample="new")
    assert isinstance(new.model.dept_head.linear_probe_proj, torch.nn.Identity)
    new.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(new.model_inference(images), new.model.forward_features(images).logits)
    with pytest.raises(UserInputError, match="SUBSAMPLE_CLASSES base"):
        new.compute_loss(images, torch.tensor([0] * len(images)))


def test_staged_learning_rates_and_what_trains(build):
    trainer = build("ExtrasLinearProbeCoOp", "OPTIM.STAGED_LR", True, "OPTIM.LR", 0.002,
                    "OPTIM.NEW_LAYERS", ["linear_probe", "film"], "OPTIM.BASE_LR_MULT", 1.0)
    trainable = sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)
    assert trainable == ["dept_head.film_lp_img.bias", "dept_head.film_lp_img.scale",
                         "dept_head.film_lp_text.bias", "dept_head.film_lp_text.scale",
                         "dept_head.linear_probe_proj.bias", "dept_head.linear_probe_proj.weight",
                         "prompt_learner.ctx"]
    base, new = trainer.optim.param_groups
    assert base["initial_lr"] == 0.002 * 6.5 * (1.0 / 6.5) == 0.0020000000000000005
    assert new["initial_lr"] == 0.002 * 6.5
    assert [p is trainer.model.prompt_learner.ctx for p in base["params"]] == [True]
    assert len(new["params"]) == 6


@pytest.mark.parametrize("name", ["CoOp", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC"])
def test_training_lowers_the_loss(build, name):
    trainer = build("ExtrasLinearProbe" + name, "OPTIM.LR", 0.01)
    head = trainer.model.dept_head
    before = head.linear_probe_proj.weight.detach().clone()
    batch = first_batch(trainer)
    losses = [trainer.forward_backward(batch)["loss"] for _ in range(4)]
    assert losses[-1] < losses[0], losses
    assert not torch.equal(head.linear_probe_proj.weight, before)


def test_checkpoint_round_trip(build, tmp_path):
    out = tmp_path / "run"
    trainer = build("ExtrasLinearProbeMaPLe", output_dir=out)
    trainer.forward_backward(first_batch(trainer))
    trainer.save_model(0, str(out))
    assert os.path.isfile(out / "dept_head" / "model.pth.tar-1")
    fresh = build("ExtrasLinearProbeMaPLe", "SEED", 5, output_dir=tmp_path / "other")
    with torch.no_grad():
        fresh.model.dept_head.film_lp_img.scale.fill_(3.0)
    fresh.load_model(str(out), epoch=1)
    for ours, theirs in ((fresh.model.dept_head, trainer.model.dept_head),
                         (fresh.model.prompt_learner, trainer.model.prompt_learner)):
        for (n, p), (_, q) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            assert torch.equal(p, q), n
    # a new-class test loads the same files: the probe's entries are not used there
    new = build("ExtrasLinearProbeMaPLe", output_dir=tmp_path / "new", subsample="new")
    new.load_model(str(out), epoch=1)
    assert torch.equal(new.model.dept_head.film_lp_text.scale,
                       trainer.model.dept_head.film_lp_text.scale)


def test_shipped_configs_have_the_official_values():
    import train

    expected = {"ExtrasLinearProbeCoOp": ("vit_b16_ep10_bs4_lr35", 4, 0.0035),
                "ExtrasLinearProbeCoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1", 1, 0.002),
                "ExtrasLinearProbeKgCoOp": ("vit_b16_ep10_ctxv1_bs4_lr35", 4, 0.0035),
                "ExtrasLinearProbeMaPLe": ("vit_b16_c2_ep10_batch4_2ctx", 4, 0.0035)}
    for trainer, (name, batch, lr) in expected.items():
        args = train.build_parser().parse_args([
            "--root", "data", "--seed", "1", "--output-dir", "out", "--trainer", trainer,
            "--config-file", os.path.join(REPO, "configs", "trainers", trainer, name + ".yaml")])
        cfg = train.setup_cfg(args)
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == batch and cfg.OPTIM.LR == lr
        assert cfg.OPTIM.MAX_EPOCH == 10 and cfg.OPTIM.STAGED_LR and cfg.OPTIM.LR_EXP == 6.5
        assert list(cfg.OPTIM.NEW_LAYERS) == ["linear_probe", "film"]
        assert cfg.OPTIM.BASE_LR_MULT == 1.0
        assert (cfg.TRAINER.LINEAR_PROBE.TYPE, cfg.TRAINER.LINEAR_PROBE.WEIGHT,
                cfg.TRAINER.LINEAR_PROBE.TEST_TIME_FUSION) == ("linear", 0.7, True)
        assert cfg.TRAINER.FILM.LINEAR_PROBE
        assert list(cfg.TRAINER.NAMES_TO_UPDATE) == ["prompt_learner", "linear_probe", "film"]
    kg = cfg  # noqa: F841
    args = train.build_parser().parse_args([
        "--root", "data", "--output-dir", "out", "--trainer", "ExtrasLinearProbeKgCoOp",
        "--config-file", os.path.join(REPO, "configs", "trainers", "ExtrasLinearProbeKgCoOp",
                                      "vit_b16_ep10_ctxv1_bs4_lr35.yaml")])
    node = train.setup_cfg(args).TRAINER.COOP
    assert (node.N_CTX, node.CTX_INIT, node.W, node.ALPHA) == (4, "a photo of a", 2.0, 1.0)


@pytest.mark.parametrize("name, prec", [("ExtrasLinearProbeMaPLe", "fp16"),
                                        ("ExtrasLinearProbeCoOp", "amp")])
def test_half_precision_steps(build, monkeypatch, name, prec):
    """PREC fp16 as the official code: the probe in CLIP's float16, FiLM float32;
    amp: float32 parameters under autocast (PREC_ON_CPU keeps them on the CPU)."""
    monkeypatch.setenv("PREC_ON_CPU", "1")
    key = "TRAINER.{}.PREC".format("COOP" if "CoOp" in name else "MAPLE")
    trainer = build(name, key, prec, "OPTIM.LR", 0.01)
    head = trainer.model.dept_head
    half = torch.float16 if prec == "fp16" else torch.float32
    assert head.linear_probe_proj.weight.dtype == half
    assert head.film_lp_img.scale.dtype == torch.float32
    batch = first_batch(trainer)
    losses = []
    for _ in range(10 if prec == "amp" else 4):  # amp skips its first overflowing steps
        trainer.batch_idx = 0
        losses.append(trainer.forward_backward(batch)["loss"])
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(batch["img"])
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_imagenet_model_on_imagenet_a_keeps_its_classes_rows(tiny_clip_path, tmp_path):
    """Cross-dataset: trained on ImageNet (all classes: the base rule), tested on
    ImageNet-A (the base rule too: the probe, its 1,000-class rows clipped to
    the class folders present)."""
    import train
    from tests.dataset_layouts import write_dataset

    data = str(tmp_path / "data")
    write_dataset(data, "ImageNet", n_classes=4, n_per_class=4)
    write_dataset(data, "ImageNetA", n_classes=2, n_per_class=3)  # classes 0 and 2 of 4

    def trainer(dataset, out):
        args = train.build_parser().parse_args([
            "--root", data, "--seed", "1", "--output-dir", str(tmp_path / out),
            "--trainer", "ExtrasLinearProbeCoOp",
            "--config-file", os.path.join(REPO, "configs", "trainers", "ExtrasLinearProbeCoOp",
                                          "toy.yaml"),
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", dataset + ".yaml"),
            "MODEL.BACKBONE.NAME", tiny_clip_path, "DATASET.NUM_SHOTS", "2"])
        return build_trainer(train.setup_cfg(args))

    source = trainer("imagenet", "source")
    assert source.model.dept_head.linear_probe_proj.out_features == 4
    source.forward_backward(first_batch(source))
    source.save_model(0, str(tmp_path / "source"))
    target = trainer("imagenet_a", "target")
    head = target.model.dept_head
    assert head.source_rows == [True, False, True, False]
    target.load_model(str(tmp_path / "source"), epoch=1)
    trained = source.model.dept_head.linear_probe_proj
    assert torch.equal(head.linear_probe_proj.weight, trained.weight[[0, 2]])
    assert torch.equal(head.linear_probe_proj.bias, trained.bias[[0, 2]])
    assert target.base_rule


def test_run_state_round_trip_holds_the_head(build, tmp_path):
    """The resume state (run_state.pth) carries the head and the two-group optimizer."""
    staged = ("OPTIM.STAGED_LR", True, "OPTIM.NEW_LAYERS", ["linear_probe", "film"])
    trainer = build("ExtrasLinearProbeCoOp", *staged, output_dir=tmp_path / "a")
    trainer.forward_backward(first_batch(trainer))
    state = trainer.run_state(1)
    assert set(state["models"]) == {"prompt_learner", "dept_head"}
    fresh = build("ExtrasLinearProbeCoOp", "SEED", 3, *staged, output_dir=tmp_path / "b")
    assert fresh.load_run_state(state) == 1
    for name in ("prompt_learner", "dept_head"):
        for (n, p), (_, q) in zip(fresh._models[name].state_dict().items(),
                                  trainer._models[name].state_dict().items()):
            assert torch.equal(p, q), n
    head_group = fresh.optim.param_groups[1]["params"]
    assert len(head_group) == 6
    assert all(torch.equal(fresh.optim.state[p]["momentum_buffer"],
                           trainer.optim.state[q]["momentum_buffer"])
               for p, q in zip(head_group, trainer.optim.param_groups[1]["params"]))
