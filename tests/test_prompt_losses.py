"""PromptSRC losses and Gaussian prompt aggregation against hand computations."""
import math

import pytest
import torch
from torch import nn

from clipwb.errors import ConfigError
from clipwb.trainers.kit.prompted_clip import CLIPOutput
from clipwb.trainers.kit.scl_losses import (GaussianPromptAggregation, gpa_weights, scl_image_loss,
                                       scl_logits_loss, scl_losses, scl_text_loss)


def test_l1_terms_by_hand():
    text = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    frozen_text = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    # mean |diff| = (0.2 + 0.2 + 1 + 1) / 4 = 0.6, times the weight 25
    assert scl_text_loss(text, frozen_text, 25).item() == pytest.approx(15.0)
    image = torch.tensor([[1.0, 0.0, 0.0]])
    frozen_image = torch.tensor([[0.0, 1.0, 0.0]])
    assert scl_image_loss(image, frozen_image, 10).item() == pytest.approx(10 * 2 / 3)


def test_logits_kl_direction_and_normalisation():
    prompted = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    frozen = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    p = prompted.softmax(-1)
    q = frozen.softmax(-1)
    # KL(frozen || prompted) = sum q (log q - log p), summed, / numel (= 6)
    expected = (q * (q.log() - p.log())).sum() / 6
    reverse = (p * (p.log() - q.log())).sum() / 6
    loss = scl_logits_loss(prompted, frozen)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(loss.item() - reverse.item()) > 1e-3  # the direction matters here
    assert scl_logits_loss(frozen, frozen).item() == pytest.approx(0.0, abs=1e-7)


def test_scl_losses_sum_and_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1).requires_grad_()
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    frozen_text, frozen_image = torch.randn(3, 8), torch.randn(4, 8)
    frozen_logits = torch.randn(4, 3)
    terms = scl_losses(CLIPOutput(logits, image, text), frozen_image, frozen_text,
                       frozen_logits, text_weight=25, image_weight=10)
    expected = (scl_text_loss(text, frozen_text, 25) + scl_image_loss(image, frozen_image, 10)
                + scl_logits_loss(logits, frozen_logits))
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    terms.total.backward()
    assert all(t.grad is not None for t in (logits, text, image))


def test_gpa_weights_by_hand():
    weights = gpa_weights(20, 15, 1)
    assert sum(weights) == pytest.approx(1.0)
    assert max(range(20), key=lambda i: weights[i]) == 14  # epoch 15 (1-based)
    density = [math.exp(-0.5 * (e - 15) ** 2) / math.sqrt(2 * math.pi) for e in range(1, 21)]
    assert weights == pytest.approx([d / sum(density) for d in density])
    # a mean far outside the epochs does not underflow to NaN
    far = gpa_weights(2, 100, 1)
    assert far[1] == pytest.approx(1.0) and sum(far) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="GPA_STD"):
        gpa_weights(5, 3, 0)


def test_gpa_aggregate_is_the_weighted_sum():
    module = nn.Linear(2, 2)
    module.weight.requires_grad_(True)
    frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    module.register_parameter("frozen", frozen)
    gpa = GaussianPromptAggregation(max_epoch=3, mean=2, std=1)
    snapshots = []
    for epoch in range(3):
        with torch.no_grad():
            module.weight.fill_(float(epoch + 1))
            module.bias.fill_(float(-epoch))
        snapshots.append({k: v.clone() for k, v in module.state_dict().items()})
        gpa.update(module, epoch)
    gpa.apply(module)
    w = gpa.weights
    expected_weight = sum(w[e] * snapshots[e]["weight"] for e in range(3))
    assert torch.allclose(module.weight, expected_weight)
    assert torch.allclose(module.weight, torch.full((2, 2), w[0] * 1 + w[1] * 2 + w[2] * 3))
    assert torch.allclose(module.bias, torch.full((2,), -(w[1] + 2 * w[2])))
    assert torch.equal(module.frozen, torch.ones(2))  # not aggregated


def test_gpa_after_resume_is_renormalised():
    module = nn.Linear(1, 1, bias=False)
    gpa = GaussianPromptAggregation(max_epoch=4, mean=3, std=1)
    for epoch in (2, 3):  # training resumed at epoch 3 (0-based 2)
        with torch.no_grad():
            module.weight.fill_(2.0)
        gpa.update(module, epoch)
    gpa.apply(module)
    assert module.weight.item() == pytest.approx(2.0)
