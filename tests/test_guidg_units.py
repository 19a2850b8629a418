"""GuiDG building blocks on hand-made tensors: CMAttn, MMS, UEO, expert
weighting, BMA, WiSE-FT and the per-domain batch sampler."""
import math
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from clip.model import convert_weights
from scipy.stats import beta as beta_distribution
from torch import nn

from clipwb.trainers.guidg.averaging import AveragedEncoder, bma_weight, interpolate_state_dicts
from clipwb.trainers.guidg.cmattn import CMAttn, batch_weights, mix_expert_logits
from clipwb.trainers.guidg.losses import (expert_weighted_loss, mms_logits, per_expert_cross_entropy,
                                   ueo_regularizer)
from clipwb.trainers.guidg.sampler import DomainBalancedBatchSampler


def unit(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1)


# ------------------------------------------------------------------ CMAttn

def test_cmattn_shapes_and_simplex():
    torch.manual_seed(0)
    attn = CMAttn(feature_dim=16, num_classes=5, num_heads=4)
    weights = attn(unit(6, 16), unit(3, 5, 16, seed=1))
    assert weights.shape == (6, 3)
    assert torch.allclose(weights.sum(-1), torch.ones(6), atol=1e-6)
    assert (weights > 0).all()
    # 4 x (16*16 + 16) + 4 x (5 + 1) parameters, as in the paper's sizing
    assert sum(p.numel() for p in attn.parameters()) == 4 * (16 * 16 + 16) + 4 * (5 + 1)
    # cosine scores without temperature: max / min weight <= e^2 per head
    assert (weights.max(-1).values / weights.min(-1).values <= math.exp(2) + 1e-4).all()
    assert batch_weights(weights, "batch").shape == (3,)
    assert batch_weights(weights, "sample") is weights


def test_cmattn_does_not_backpropagate_into_features():
    attn = CMAttn(8, 3, num_heads=2)
    features = unit(4, 8).requires_grad_(True)
    experts = unit(2, 3, 8, seed=1).requires_grad_(True)
    attn(features, experts).sum().backward()
    assert features.grad is None and experts.grad is None
    assert attn.queries[0].weight.grad is not None


def test_cmattn_moves_weight_to_the_expert_with_the_lower_loss():
    torch.manual_seed(0)
    attn = CMAttn(16, 5, num_heads=4)
    features, experts = unit(12, 16), unit(3, 5, 16, seed=1)
    losses = torch.tensor([2.0, 0.5, 1.5])  # expert 1 fits the data best
    optim = torch.optim.Adam(attn.parameters(), lr=1e-2)
    start = batch_weights(attn(features, experts), "batch").detach()
    for _ in range(40):
        w = batch_weights(attn(features, experts), "batch")
        loss = (w * losses).sum()  # dL/dw_i = loss_i, as in GuiDG's objective
        optim.zero_grad()
        loss.backward()
        optim.step()
    end = batch_weights(attn(features, experts), "batch").detach()
    assert end.argmax() == 1 and end[1] > start[1] + 0.1
    assert end[0] < start[0]


def test_mix_expert_logits():
    logits = torch.arange(12.0).reshape(1, 3, 4)
    w = torch.tensor([0.5, 0.25, 0.25])
    expected = 0.5 * logits[0, 0] + 0.25 * logits[0, 1] + 0.25 * logits[0, 2]
    assert torch.allclose(mix_expert_logits(logits, w)[0], expected)
    assert torch.allclose(mix_expert_logits(logits, w.unsqueeze(0))[0], expected)


# -------------------------------------------------------------------- losses

def test_mms_logits_formula():
    f, text = unit(4, 8), unit(5, 8, seed=1)
    labels = torch.tensor([0, 3, 3, 1])
    tau, lam = 100.0, 0.3
    got = mms_logits(f, text, labels, tau, lam)
    for b in range(4):
        for c in range(5):
            want = tau * (f[b] @ text[c] - lam * text[labels[b]] @ text[c])
            assert got[b, c].item() == pytest.approx(want.item(), rel=1e-5, abs=1e-4)
    # equals tau * [S(I, T_c) + lambda (1 - S(T_y, T_c))] up to a per-row constant
    paper = tau * (f @ text.t() + lam * (1 - text[labels] @ text.t()))
    assert torch.allclose(F.log_softmax(got, -1), F.log_softmax(paper, -1), atol=1e-4)
    # no margin: plain CLIP logits
    assert torch.allclose(mms_logits(f, text, labels, tau, 0.0), tau * f @ text.t())


def test_ueo_regularizer_by_hand():
    same = torch.zeros(3, 4)  # uniform predictions: H(p) = H(mean p) = log 4
    assert ueo_regularizer(same).item() == pytest.approx(0.0, abs=1e-6)
    confident = torch.eye(4) * 50  # confident and diverse: 0 - log 4
    assert ueo_regularizer(confident).item() == pytest.approx(-math.log(4), abs=1e-4)


def test_expert_weighted_loss_batch_and_sample():
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([1, 2])
    ce = per_expert_cross_entropy(logits, labels)
    for b in range(2):
        for i in range(3):
            want = F.cross_entropy(logits[b, i:i + 1], labels[b:b + 1])
            assert ce[b, i].item() == pytest.approx(want.item(), rel=1e-5)
    w = torch.tensor([0.2, 0.3, 0.5])
    assert expert_weighted_loss(ce, w).item() == pytest.approx(
        sum(w[i] * ce[:, i].mean() for i in range(3)).item(), rel=1e-5)
    ws = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    assert expert_weighted_loss(ce, ws).item() == pytest.approx(
        ((ce[0, 0] + ce[1, 2]) / 2).item(), rel=1e-5)


# ----------------------------------------------------------------- averaging

def beta_pdf(x, beta):
    norm = math.gamma(beta) ** 2 / math.gamma(2 * beta)
    return x ** (beta - 1) * (1 - x) ** (beta - 1) / norm


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_bma_weights_follow_the_beta_pdf(beta):
    total = 6
    for step in range(total):
        x = (step + 0.5) / (total + 1)
        assert bma_weight(step, total, beta) == pytest.approx(beta_pdf(x, beta), rel=1e-6)


def official_bma_shares(total, beta):
    """The share of each iterate theta_0..theta_T in GuiDG's BMA (engine.py,
    GeneralMovingAverage): ``weight_sum = a_0`` at the copy of theta_0, then
    update t mixes theta_t in with relative weight ``a_t / weight_sum``; the
    shares are followed through that recurrence in exact float64 arithmetic."""
    a = [beta_pdf((t + 0.5) / (total + 1), beta) for t in range(total + 1)]
    shares, weight_sum = [1.0], a[0]
    for t in range(1, total + 1):
        rel = a[t] / weight_sum
        shares = [s / (1 + rel) for s in shares] + [rel / (1 + rel)]
        weight_sum += a[t]
    return shares


def bma_of_one_hot_iterates(total, beta):
    """Our BMA over iterates theta_t = e_t (one-hot, float64): the average's
    coordinates are the weights of the iterates."""
    net = nn.Linear(total + 1, 1, bias=False).double()
    with torch.no_grad():
        net.weight.zero_()
        net.weight[0, 0] = 1.0  # theta_0: the copy made when the average is built
    avg = AveragedEncoder(net)
    for step in range(1, total + 1):
        with torch.no_grad():
            net.weight.zero_()
            net.weight[0, step] = 1.0
        avg.bma_update(net, total, beta)
    return avg, avg.encoder.weight[0].tolist()


@pytest.mark.parametrize("total,beta", [(5, 0.5), (12, 0.1), (7, 2.0)])
def test_bma_matches_the_official_formula_on_a_short_run(total, beta):
    avg, shares = bma_of_one_hot_iterates(total, beta)
    want = official_bma_shares(total, beta)
    assert shares == pytest.approx(want, rel=1e-9, abs=1e-12)
    # closed form: a_t / sum_{k=0..T} a_k, theta_0 included
    a = [beta_pdf((t + 0.5) / (total + 1), beta) for t in range(total + 1)]
    assert shares == pytest.approx([x / sum(a) for x in a], rel=1e-9)
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)
    assert shares[0] > 0 and shares[-1] == pytest.approx(a[-1] / sum(a), rel=1e-9)
    assert int(avg.num_updates) == total
    assert float(avg.weight_sum) == pytest.approx(sum(a), rel=1e-9)


def test_bma_last_iterate_share_at_guidg_length():
    """T = 4000 (10 x 400), beta 0.1: the last iterate holds 6.47 % of the
    average (the old off-by-one gave it 2.57 % and theta_0 nothing)."""
    total, beta = 4000, 0.1
    _, shares = bma_of_one_hot_iterates(total, beta)
    assert shares[-1] == pytest.approx(0.0647, abs=5e-5)
    assert shares[0] == pytest.approx(shares[-1], rel=1e-9)  # the pdf is symmetric
    assert sum(shares) == pytest.approx(1.0, abs=1e-9)


def test_bma_average_of_a_weight_sequence():
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = AveragedEncoder(net)
    total, beta = 5, 0.5
    thetas = [0.0]
    for step in range(1, total + 1):
        with torch.no_grad():
            net.weight.fill_(float(step))
        thetas.append(float(step))
        avg.bma_update(net, total, beta)
    alphas = [beta_pdf((t + 0.5) / (total + 1), beta) for t in range(total + 1)]
    want = sum(a * th for a, th in zip(alphas, thetas)) / sum(alphas)
    assert avg.encoder.weight[0, 0].item() == pytest.approx(want, rel=1e-5)
    assert int(avg.num_updates) == total
    assert float(avg.weight_sum) == pytest.approx(sum(alphas), rel=1e-6)
    # the running state is in the state dict (resumable), and it goes through
    # a Dassl checkpoint file, which strips a leading "module." from the keys
    assert {"weight_sum", "num_updates"} <= set(avg.state_dict())
    saved = {k[len("module."):] if k.startswith("module.") else k: v
             for k, v in avg.state_dict().items()}
    back = AveragedEncoder(nn.Linear(2, 1))
    back.load_state_dict(saved)
    assert torch.equal(back.encoder.weight, avg.encoder.weight)
    assert int(back.num_updates) == total
    # a checkpoint of the older layout (the encoder's keys without a prefix) loads too
    older = {k[len("encoder."):] if k.startswith("encoder.") else k: v
             for k, v in avg.state_dict().items()}
    assert set(older) == {"weight", "bias", "weight_sum", "num_updates"}
    again = AveragedEncoder(nn.Linear(2, 1))
    again.load_state_dict(older)
    assert torch.equal(again.encoder.weight, avg.encoder.weight)


class HandWrittenOfficialBMA:
    """GuiDG's BMA as its ``engine.py`` (21-38) computes it, written out: the
    sum starts at the pdf weight of iteration 0, and iteration t mixes the
    model's parameters in as ``(avg + r * theta) / (1 + r)``, ``r = a_t / sum``,
    a Python float, in each parameter's own dtype."""

    def __init__(self, model, total, beta):
        self.pdf = lambda it: beta_distribution(beta, beta).pdf((it + 0.5) / (total + 1))
        self.iteration, self.weight_sum = 0, self.pdf(0)
        self.params = [p.detach().clone() for p in model.parameters()]

    def update(self, model):
        self.iteration += 1
        weight = self.pdf(self.iteration)
        r = weight / self.weight_sum
        self.params = [(avg + r * p.detach()) / (1 + r)
                       for avg, p in zip(self.params, model.parameters())]
        self.weight_sum += weight


def half_precision_net(seed):
    """A Linear + LayerNorm after CLIP's ``convert_weights``: float16 linear
    weights, float32 layer norm (as CLIP's image encoder under fp16_master)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32))
    convert_weights(net)
    return net


@torch.no_grad()
def take_a_step(net, seed):
    gen = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.add_((torch.randn(p.shape, generator=gen) * 1e-2).to(p.dtype))


@pytest.mark.parametrize("total,beta", [(8, 0.1), (5, 0.5)])
def test_bma_of_half_precision_weights_is_the_official_update_bit_for_bit(total, beta):
    net = half_precision_net(0)
    assert [p.dtype for p in net.parameters()] == [torch.float16] * 2 + [torch.float32] * 2
    avg, official = AveragedEncoder(net), HandWrittenOfficialBMA(net, total, beta)
    ours = [p.detach().clone() for p in net.parameters()]  # our order, in float16
    weight_sum = bma_weight(0, total, beta)
    for step in range(1, total + 1):
        take_a_step(net, step)
        avg.bma_update(net, total, beta)
        official.update(net)
        got = list(avg.encoder.parameters())
        assert all(g.dtype == w.dtype and torch.equal(g, w) for g, w in zip(got, official.params))
        a = bma_weight(step, total, beta)
        ours = [o.mul(weight_sum / (weight_sum + a)).add(p.detach(), alpha=a / (weight_sum + a))
                for o, p in zip(ours, net.parameters())]
        weight_sum += a
    # our order rounds otherwise in float16: ~0.01 % apart, not bit-equal
    half = torch.cat([got[0].flatten(), got[1]]).float()
    ours_half = torch.cat([ours[0].flatten(), ours[1]]).float()
    assert (half != ours_half).sum() > 100
    assert torch.allclose(half, ours_half, rtol=2e-3, atol=1e-4)


def test_bma_of_float32_weights_keeps_our_update():
    torch.manual_seed(0)
    net = nn.Linear(64, 32)
    total, beta = 6, 0.1
    avg, official = AveragedEncoder(net), HandWrittenOfficialBMA(net, total, beta)
    ours = [p.detach().clone() for p in net.parameters()]
    weight_sum = bma_weight(0, total, beta)
    for step in range(1, total + 1):
        take_a_step(net, step)
        avg.bma_update(net, total, beta)
        official.update(net)
        a = bma_weight(step, total, beta)
        ours = [o.mul(weight_sum / (weight_sum + a)).add(p.detach(), alpha=a / (weight_sum + a))
                for o, p in zip(ours, net.parameters())]
        weight_sum += a
    got = list(avg.encoder.parameters())
    assert all(torch.equal(g, o) for g, o in zip(got, ours))
    assert not all(torch.equal(g, o) for g, o in zip(got, official.params))
    assert all(torch.allclose(g, o, rtol=1e-5, atol=1e-7) for g, o in zip(got, official.params))


def test_wise_ft_interpolates_on_a_separate_copy():
    zero_shot = nn.Linear(3, 2)
    with torch.no_grad():
        zero_shot.weight.fill_(1.0)
        zero_shot.bias.fill_(-1.0)
    zs_state = {k: v.clone() for k, v in zero_shot.state_dict().items()}
    tuned = nn.Linear(3, 2)
    with torch.no_grad():
        tuned.weight.fill_(3.0)
        tuned.bias.fill_(1.0)
    mixed = interpolate_state_dicts(zs_state, tuned.state_dict(), 0.25)
    assert torch.allclose(mixed["weight"], torch.full((2, 3), 0.75 * 1 + 0.25 * 3))
    evaluated = AveragedEncoder(tuned)
    evaluated.wise_ft(zs_state, tuned, 0.5)
    assert torch.allclose(evaluated.encoder.weight, torch.full((2, 3), 2.0))
    assert torch.allclose(evaluated.encoder.bias, torch.zeros(2))
    assert torch.allclose(tuned.weight, torch.full((2, 3), 3.0))  # training weights untouched


# ------------------------------------------------------------------- sampler

def test_domain_balanced_batches():
    data = [SimpleNamespace(label=i % 2, domain=d)
            for d, n in ((0, 5), (1, 9), (2, 3)) for i in range(n)]
    random.seed(0)
    sampler = DomainBalancedBatchSampler(data, per_domain=2, num_batches=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    for batch in batches:
        domains = [data[i].domain for i in batch]
        assert domains == [0, 0, 1, 1, 2, 2]
    # one pass of the smallest domain by default
    assert len(DomainBalancedBatchSampler(data, per_domain=1)) == 3
