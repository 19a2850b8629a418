"""DiSa's loss terms and saliency-aware masking against hand computations."""
import math

import pytest
import torch
import torch.nn.functional as F

from clipwb.errors import ConfigError, UserInputError
from tests.tiny_clip import build_tiny_clip
from clipwb.trainers.disa.losses import ce_loss, cir_loss, class_prototypes, dir_loss, sr_loss
from clipwb.trainers.disa.saliency import (cls_attention_saliency, drop_weights,
                                    frozen_image_pass, keep_count,
                                    keep_mask, random_saliency, select_patches, text_saliency,
                                    zero_dropped_patches)
from clipwb.trainers.kit.prompted_clip import CLIPOutput
from clipwb.trainers.kit.prompted_encoders import PromptedImageEncoder
from clipwb.trainers.kit.scl_losses import scl_losses

L_A = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])  # prompted(masked) image x frozen text
L_B = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # frozen image x prompted text


def test_cir_forward_is_kl_of_the_prompted_image_side_first():
    qa, qb = L_A.softmax(-1), L_B.softmax(-1)
    forward = (qa * (qa.log() - qb.log())).sum() / 6  # D_KL(q_a || q_b) / (B * C)
    reverse = (qb * (qb.log() - qa.log())).sum() / 6
    assert cir_loss(L_A, L_B).item() == pytest.approx(forward.item(), rel=1e-5)
    assert cir_loss(L_A, L_B, "reverse").item() == pytest.approx(reverse.item(), rel=1e-5)
    assert cir_loss(L_A, L_B, "symmetric").item() == pytest.approx(
        0.5 * (forward + reverse).item(), rel=1e-5)
    assert abs(forward.item() - reverse.item()) > 1e-2  # the direction matters here
    assert cir_loss(L_A, L_A).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="forward, reverse, symmetric"):
        cir_loss(L_A, L_B, "both")


def test_cir_gradient_reaches_both_learnable_sides():
    a, b = L_A.clone().requires_grad_(), L_B.clone().requires_grad_()
    cir_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # no stop-gradient


def test_ce_and_sr_terms():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    expected = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(1 / (1 + math.e))) / 2
    assert ce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    text, image = F.normalize(torch.randn(2, 4), dim=-1), F.normalize(torch.randn(2, 4), dim=-1)
    frozen_text, frozen_image = torch.randn(2, 4), torch.randn(2, 4)
    frozen_logits = torch.randn(2, 2)
    output = CLIPOutput(logits, image, text)
    ours = sr_loss(output, frozen_image, frozen_text, frozen_logits, 25, 10)
    theirs = scl_losses(output, frozen_image, frozen_text, frozen_logits, 25, 10)
    assert ours.total.item() == pytest.approx(theirs.total.item())  # PromptSRC's L_SCL


def test_dir_cosine_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    prototypes = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    # 1 - cos: sample 0 -> 1 - 0.6, sample 1 -> 1 - 0.8
    assert dir_loss(features, prototypes, labels).item() == pytest.approx((0.4 + 0.2) / 2)
    assert dir_loss(features, prototypes, torch.tensor([0, 1])).item() == pytest.approx(0.2)
    # a rescaled feature has the same direction: the loss ignores the norm
    assert dir_loss(3 * features, prototypes, labels).item() == pytest.approx(0.3)


def test_dir_delta_by_hand():
    f_p = torch.tensor([[1.0, 1.0, 0.0]])
    f_o = torch.tensor([[0.0, 1.0, 0.0]])
    mu = torch.tensor([[1.0, 0.0, 0.0]])
    # f_p - f_o = (1, 0, 0); mu - f_o = (1, -1, 0): cos = 1 / sqrt(2)
    loss = dir_loss(f_p, mu, torch.tensor([0]), "delta", f_o)
    assert loss.item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-6)
    assert dir_loss(f_p, mu, torch.tensor([0])).item() == pytest.approx(1 - 1 / math.sqrt(2))
    f_p2 = torch.tensor([[2.0, 1.0, 0.0]])  # same delta direction, different cosine to mu
    assert dir_loss(f_p2, mu, torch.tensor([0]), "delta", f_o).item() == pytest.approx(
        loss.item(), rel=1e-6)
    assert dir_loss(f_p2, mu, torch.tensor([0])).item() != pytest.approx(loss.item())
    with pytest.raises(ValueError, match="frozen image features"):
        dir_loss(f_p, mu, torch.tensor([0]), "delta")


def test_class_prototypes_by_hand():
    features = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, -3.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: mean of (1, 0) and (0, 1) -> (0.5, 0.5) -> normalised; class 1: (0, -1)
    expected = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, -1.0]])
    assert torch.allclose(class_prototypes(features, labels, 2), expected, atol=1e-6)
    with pytest.raises(UserInputError, match="cat"):
        class_prototypes(features, labels, 3, ["dog", "bird", "cat"])


def test_text_saliency_by_hand():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    text = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    s = text_saliency(patches, text, torch.tensor([0]))
    cos = torch.tensor([0.0, 1.0, 0.8])  # against class 0's unit text feature (0, 1)
    assert torch.allclose(s[0], (100 * cos).softmax(-1), atol=1e-6)
    assert s.argmax().item() == 1
    other = text_saliency(patches, text, torch.tensor([1]))  # class 1 prefers patch 0
    assert other.argmax().item() == 0


def test_cls_attention_and_random_saliency():
    attn = torch.tensor([[0.1, 0.3, 0.1]])
    assert torch.allclose(cls_attention_saliency(attn), torch.tensor([[0.2, 0.6, 0.2]]))
    s = random_saliency(2, 5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, 5) and torch.allclose(s.sum(-1), torch.ones(2))


@pytest.mark.parametrize("n, ratio, kept", [(16, 0.3, 11), (196, 0.3, 137), (196, 0.1, 176),
                                            (196, 0.5, 98), (16, 0.0, 16), (4, 0.9, 1)])
def test_keep_count(n, ratio, kept):
    assert keep_count(n, ratio) == kept == max(1, math.floor((1 - ratio) * n + 0.5))


def test_keep_count_rejects_bad_ratios():
    for ratio in (1.0, -0.2):
        with pytest.raises(ConfigError, match="mask ratio"):
            keep_count(16, ratio)


def test_topk_keeps_the_most_salient_patches():
    torch.manual_seed(0)
    saliency = torch.rand(3, 16).softmax(-1)
    keep = select_patches(saliency, 0.3)
    assert keep.shape == (3, 11)
    for row, kept in zip(saliency, keep):
        assert kept.tolist() == sorted(kept.tolist())
        dropped = sorted(set(range(16)) - set(kept.tolist()))
        assert row[kept].min() > row[dropped].max()
    mask = keep_mask(keep, 16)
    assert mask.sum(1).tolist() == [11, 11, 11]


def test_drop_weights_are_one_minus_the_rank_rescaled_saliency():
    saliency = torch.tensor([[0.1, 0.5, 0.2, 0.2, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]])
    # ranks 1, 4, 2.5, 2.5, 0 of 4 (ties share their mean rank); all tied: 2 of 4
    assert drop_weights(saliency).tolist() == [[0.75, 0.0, 0.375, 0.375, 1.0], [0.5] * 5]


def test_sampled_drops_never_take_the_unique_most_salient_patch():
    saliency = torch.zeros(200, 8)
    saliency[:, 2] = 1.0  # the most salient: drop weight 0, always kept
    keep = select_patches(saliency, 0.5, "sample", generator=torch.Generator().manual_seed(0))
    assert keep.shape == (200, 4)
    mask = keep_mask(keep, 8)
    assert mask[:, 2].all()
    assert 0.3 < mask[:, [0, 1, 3, 4, 5, 6, 7]].float().mean() < 0.56  # tied: 3 of 7 each
    with pytest.raises(ConfigError, match="topk, sample"):
        select_patches(saliency, 0.5, "bottomk")


def test_sampled_drops_take_the_least_salient_patches_far_more_often():
    # saliencies as the sources give them: a softmax over 16 patches, summing to one
    torch.manual_seed(0)
    saliency = (3 * torch.randn(2000, 16)).softmax(-1)
    keep = select_patches(saliency, 0.3, "sample", generator=torch.Generator().manual_seed(0))
    dropped = ~keep_mask(keep, 16)
    assert dropped.sum(1).tolist() == [5] * 2000
    by_rank = dropped.gather(1, saliency.argsort(1)).float().mean(0)  # least salient first
    # 1 - s_i of such scores is ~1 for every patch (drops ~ uniform, 5/16 each);
    # by rank the 4 least salient go about half of the time, the 4 most rarely
    assert by_rank[:4].mean() > 0.45 and by_rank[-4:].mean() < 0.1
    assert by_rank[0] > 5 * by_rank[-3]
    assert by_rank[-1] == 0


def test_zero_pixels_zeroes_exactly_the_dropped_patches():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32) + 5  # no zero pixel by chance
    keep = torch.tensor([[0, 5, 15], [1, 2, 3]])
    out = zero_dropped_patches(images, keep, 8)
    for b in range(2):
        for patch in range(16):
            r, c = patch // 4, patch % 4
            block = out[b, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
            if patch in keep[b].tolist():
                assert torch.equal(block, images[b, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8])
            else:
                assert torch.all(block == 0)


@pytest.fixture(scope="module")
def encoder():
    return PromptedImageEncoder(build_tiny_clip(0))


def test_token_dropping_keeps_cls_and_prompts(encoder):
    images = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[0, 3, 9], [2, 4, 15]])
    full = encoder.embed(images)
    kept = encoder.embed(images, keep)
    assert kept.shape == (2, 4, 64)
    assert torch.equal(kept[:, 0], full[:, 0])  # CLS
    for b in range(2):
        assert torch.equal(kept[b, 1:], full[b, 1 + keep[b]])  # the kept patches, positions on
    prompts = torch.randn(2, 64)
    out = encoder.encode(images, prompts, [torch.randn(2, 64)], keep, hidden_states=True)
    states = out.hidden_states
    assert states[0].shape == (2, 1 + 3 + 2, 64)  # CLS + kept patches + prompts
    assert torch.allclose(states[0][:, -2:], encoder.visual.ln_pre(prompts).expand(2, -1, -1),
                          atol=1e-5)


def test_frozen_pass_returns_cls_features_patches_and_attention(encoder):
    images = torch.randn(2, 3, 32, 32)
    frozen = frozen_image_pass(encoder, images, with_attention=True)
    with torch.no_grad():
        expected = F.normalize(encoder(images), dim=-1)
        tokens = encoder.encode(images, return_tokens=True).tokens
        patches = F.normalize(encoder.project(tokens[:, 1:]), dim=-1)
    assert torch.allclose(frozen.features, expected, atol=1e-5)
    assert torch.allclose(frozen.patch_features, patches, atol=1e-5)
    assert frozen.patch_features.shape == (2, 16, 64) and not frozen.features.requires_grad
    assert frozen.cls_attention.shape == (2, 16)
    assert torch.all(frozen.cls_attention >= 0) and torch.all(frozen.cls_attention.sum(-1) < 1)
    assert frozen_image_pass(encoder, images).cls_attention is None
