"""ProGrad: the gradient projection (kit), its two losses, the context
initialisation, a few training steps and a checkpoint round trip on the tiny
CLIP."""
import math

import pytest
import torch
import torch.nn.functional as F

from clipwb.engine import build_trainer
from clipwb.errors import ConfigError
from clipwb.trainers.kit.gradient_projection import aligned_gradients, project_conflicting
from clipwb.trainers.kit.templates import PROGRAD_TEMPLATES
from clipwb.trainers.prograd import context_words, prograd_losses
from tests.trainer_kit import make_cfg, write_two_class_images


# -- the projection against a hand-written reference ---------------------------------------
def reference_projection(g, r, lam):
    """Paper Eq. (4) written out on Python floats."""
    g, r = [float(v) for v in g.flatten()], [float(v) for v in r.flatten()]
    dot = sum(a * b for a, b in zip(g, r))
    if dot >= 0:
        return g
    rr = sum(b * b for b in r)
    return [a - lam * dot / rr * b for a, b in zip(g, r)]


def test_conflicting_gradient_loses_its_component_along_the_general_one():
    g = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    r = torch.tensor([[-2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # g . r = -4.5
    out = project_conflicting(g, r, 1.0)
    assert out.shape == g.shape
    assert out.flatten().tolist() == pytest.approx(reference_projection(g, r, 1.0), abs=1e-12)
    # hand computation: g - (-4.5 / 6) r
    assert out.flatten().tolist() == pytest.approx([-0.5, 2.0, -2.25, 1.25], abs=1e-12)
    assert float((out * r).sum()) == pytest.approx(0.0, abs=1e-12)  # orthogonal
    half = project_conflicting(g, r, 0.5)
    assert half.flatten().tolist() == pytest.approx(reference_projection(g, r, 0.5), abs=1e-12)
    assert float((half * r).sum()) == pytest.approx(-4.5 / 2, abs=1e-12)


def test_non_conflicting_gradient_is_kept_as_it_is():
    g = torch.tensor([1.0, 2.0, -1.0])
    for r in (torch.tensor([0.5, 0.1, 0.0]), torch.tensor([1.0, 0.0, 1.0])):  # dot > 0, = 0
        out = project_conflicting(g, r, 1.0)
        assert torch.equal(out, g)
        assert out.tolist() == reference_projection(g, r, 1.0)
    assert torch.equal(project_conflicting(g, torch.zeros(3), 1.0), g)  # no general direction


def test_aligned_gradients_projects_each_tensor_and_leaves_the_rest():
    a = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    b = torch.nn.Parameter(torch.tensor([2.0]))
    frozen = torch.nn.Parameter(torch.tensor([1.0]), requires_grad=False)
    unused = torch.nn.Parameter(torch.tensor([3.0]))
    loss = (a * torch.tensor([1.0, 2.0])).sum() + 3 * b.sum()  # grads (1, 2), (3)
    general = (a * torch.tensor([-1.0, 0.0])).sum() + b.sum()  # grads (-1, 0), (1)
    count = aligned_gradients([a, b, frozen, unused], loss, general, 1.0)
    assert count == 1  # only a conflicts
    assert a.grad.tolist() == pytest.approx(reference_projection(
        torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0]), 1.0))
    assert a.grad.tolist() == pytest.approx([0.0, 2.0])
    assert b.grad.tolist() == [3.0]
    assert frozen.grad is None and unused.grad is None


# -- the losses ----------------------------------------------------------------------------
def test_prograd_losses_against_a_hand_computation():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    z0 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    for t in (1.0, 2.0):
        xe, kl = prograd_losses(z, z0, y, t)
        ce_ref = 0.0
        kl_ref = 0.0
        for i in range(2):
            lse = math.log(sum(math.exp(v) for v in z[i].tolist()))
            ce_ref += (lse - float(z[i, y[i]])) / 2
            zt = [v / t for v in z[i].tolist()]
            z0t = [v / t for v in z0[i].tolist()]
            lse_t = math.log(sum(math.exp(v) for v in zt))
            p0 = [math.exp(v) / sum(math.exp(u) for u in z0t) for v in z0t]
            kl_ref += -sum(p * (v - lse_t) for p, v in zip(p0, zt)) * t * t / 2
        assert float(xe) == pytest.approx(ce_ref, rel=1e-6)
        assert float(kl) == pytest.approx(kl_ref, rel=1e-6)
    # its gradient is that of KL(p0 || p) (they differ by p0's entropy only)
    zz = z.clone().requires_grad_(True)
    grad_ours = torch.autograd.grad(prograd_losses(zz, z0, y)[1], zz)[0]
    kl_true = F.kl_div(F.log_softmax(zz, -1), F.softmax(z0, -1), reduction="batchmean")
    assert torch.allclose(grad_ours, torch.autograd.grad(kl_true, zz)[0], atol=1e-7)


def test_context_words_and_the_official_templates():
    assert context_words("template", "OxfordPets") == "a type of pet, a photo of a"
    assert context_words("Template", "DescribableTextures") == "a texture of"
    assert context_words("a_photo of", "OxfordPets") == "a photo of"
    assert context_words("", "OxfordPets") == ""
    assert PROGRAD_TEMPLATES["EuroSAT"] == "a centered satellite photo of {}."
    assert context_words("template", "NoSuchDataset") == "a photo of a"


# -- the trainer on the tiny CLIP ----------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_two_class_images(tmp_path_factory.mktemp("prograd_two_class"))


@pytest.fixture
def build(tiny_clip_path, data_root, tmp_path):
    def _build(*opts, output_dir=None):
        torch.manual_seed(0)
        cfg = make_cfg("ProGrad", tiny_clip_path, data_root, output_dir or tmp_path / "out",
                       ("TRAINER.COOP.N_CTX", 4) + opts, lr=0.01)
        return build_trainer(cfg)
    return _build


def first_batch(trainer):
    trainer.batch_idx, trainer.num_batches = 0, 1000  # no LR step in between
    return next(iter(trainer.train_loader_x))


def test_training_steps_lower_the_cross_entropy(build):
    trainer = build()
    learner = trainer.model.prompt_learner
    before = learner.ctx.detach().clone()
    batch = first_batch(trainer)
    summaries = [trainer.forward_backward(batch) for _ in range(6)]
    assert set(summaries[0]) == {"xe_loss", "kl_loss", "acc"}
    losses = [s["xe_loss"] for s in summaries]
    assert losses[-1] < losses[0], losses
    assert not torch.equal(before, learner.ctx)
    frozen = [p for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
    assert not trainer.model.zero_shot.half_features


def test_the_step_is_the_projected_cross_entropy_gradient(build):
    trainer = build("LOSS.LAMBDA", 1.0)
    images, labels = trainer.parse_batch_train(first_batch(trainer))
    ctx = trainer.model.prompt_learner.ctx
    logits = trainer.model(images)
    with torch.no_grad():
        z0 = trainer.model.zero_shot(images)
    xe, kl = prograd_losses(logits, z0, labels)
    g_xe, g_kl = torch.autograd.grad(xe, ctx, retain_graph=True)[0], torch.autograd.grad(kl, ctx)[0]
    expected = torch.tensor(reference_projection(g_xe, g_kl, 1.0)).view_as(ctx)
    start = ctx.detach().clone()
    trainer.forward_backward({"img": images, "label": labels})
    lr = trainer.optim.param_groups[0]["lr"]
    assert torch.allclose(ctx.detach(), start - lr * expected, atol=1e-6)


def test_zero_shot_logits_use_the_template_features(build):
    trainer = build()
    zs = trainer.model.zero_shot
    assert zs.text_features.shape[0] == 2
    assert torch.allclose(zs.text_features.norm(dim=-1), torch.ones(2))


def test_template_initialisation_pads_the_context_in_front(build):
    trainer = build("TRAINER.COOP.N_CTX", 6, "TRAINER.COOP.CTX_INIT", "a photo of")
    ctx = trainer.model.prompt_learner.ctx
    assert ctx.shape[0] == 6
    assert torch.equal(ctx[:3], torch.zeros_like(ctx[:3]))
    assert ctx[3:].abs().sum() > 0
    with pytest.raises(ConfigError, match="TRAINER.COOP.N_CTX"):
        build("TRAINER.COOP.N_CTX", 2, "TRAINER.COOP.CTX_INIT", "a photo of")
    with pytest.raises(ConfigError, match="LOSS.NAME"):
        build("LOSS.NAME", "ce")


def test_checkpoint_round_trip(build, tmp_path):
    out = tmp_path / "run"
    trainer = build(output_dir=out)
    trainer.forward_backward(first_batch(trainer))
    trainer.save_model(0, str(out))
    fresh = build(output_dir=tmp_path / "other")
    assert not torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)
    fresh.load_model(str(out), epoch=1)
    assert torch.equal(fresh.model.prompt_learner.ctx, trainer.model.prompt_learner.ctx)


def test_shipped_configs_have_the_official_values():
    import os

    import train
    from tests.trainer_kit import REPO

    for name, epochs in (("rn50", 200), ("rn50_ep100", 100), ("rn50_ep50", 50)):
        args = train.build_parser().parse_args([
            "--root", "data", "--seed", "1", "--output-dir", "out", "--trainer", "ProGrad",
            "--config-file", os.path.join(REPO, "configs", "trainers", "ProGrad", name + ".yaml")])
        cfg = train.setup_cfg(args)
        node = cfg.TRAINER.COOP
        assert (node.N_CTX, node.CTX_INIT, node.CSC, node.PREC) == (16, "template", False, "fp16")
        assert (cfg.LOSS.NAME, cfg.LOSS.T, cfg.LOSS.LAMBDA) == ("prograd", 1.0, 1.0)
        assert cfg.OPTIM.LR == pytest.approx(0.002) and cfg.OPTIM.MAX_EPOCH == epochs
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
        assert cfg.MODEL.BACKBONE.NAME == "RN50"
