"""DiSa's loss terms (Alipour Talemi et al., "DiSa: Directional
Saliency-Aware Prompt Learning for Generalizable Vision-Language Models",
KDD 2025, arXiv 2505.19373).

L_total = L_CE + L_SR + L_CIR + lambda L_DiR (spec ``disa.md`` section 2.6).
Section numbers below are the spec's; the paper's body was not readable, so
the reductions follow the PromptSRC code DiSa builds on (see the spec for
which parts are CONFIRMED and which INFERRED).
"""
import torch
import torch.nn.functional as F

from clipwb.errors import UserInputError

from clipwb.trainers.kit.scl_losses import scl_losses

KL_DIRECTIONS = ("forward", "reverse", "symmetric")
DIR_FORMS = ("cosine", "delta")


def ce_loss(logits, labels):
    """L_CE (spec 2.1, CONFIRMED): cross-entropy of the prompted logits
    tau * cos(f_p, g_p) of the UNMASKED image over the training classes."""
    return F.cross_entropy(logits, labels)


def sr_loss(output, frozen_image_features, frozen_text_features, frozen_logits,
            text_weight, image_weight):
    """L_SR (spec 2.2; name CONFIRMED, content INFERRED) = PromptSRC's L_SCL:
    text_weight * L1(g_p, g_o) + image_weight * L1(f_p, f_o)
    + KL(p_frozen || p_prompted). Returns the ``SCLTerms`` of the harness."""
    return scl_losses(output, frozen_image_features, frozen_text_features, frozen_logits,
                      text_weight, image_weight)


def _kl(log_p, log_q, numel):
    """sum p (log p - log q) / numel, both arguments log-probabilities."""
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True) / numel


def cir_loss(masked_prompted_logits, frozen_image_logits, direction="forward"):
    """L_CIR, cross-interactive regularization (spec 2.3; formula CONFIRMED,
    reduction INFERRED).

    ``masked_prompted_logits`` l_a = tau * f_p^m g_o^T (prompted image
    encoder on the saliency-masked image x frozen text features);
    ``frozen_image_logits`` l_b = tau * f_o g_p^T (frozen image features x
    prompted text features). With q_a = softmax(l_a), q_b = softmax(l_b):

    - ``forward`` (the paper's argument order): D_KL(q_a || q_b)
      = sum q_a (log q_a - log q_b) / (B * C);
    - ``reverse``: D_KL(q_b || q_a), same normalisation;
    - ``symmetric``: the mean of the two.

    No stop-gradient: both sides carry a learnable branch.
    """
    numel = masked_prompted_logits.numel()
    log_a = F.log_softmax(masked_prompted_logits.float(), dim=1)
    log_b = F.log_softmax(frozen_image_logits.float(), dim=1)
    if direction == "forward":
        return _kl(log_a, log_b, numel)
    if direction == "reverse":
        return _kl(log_b, log_a, numel)
    if direction == "symmetric":
        return 0.5 * (_kl(log_a, log_b, numel) + _kl(log_b, log_a, numel))
    raise ValueError("KL direction {!r}: use one of {}".format(
        direction, ", ".join(KL_DIRECTIONS)))


def dir_loss(image_features, prototypes, labels, form="cosine", frozen_image_features=None):
    """L_DiR, directional regularization (spec 2.5; intent CONFIRMED,
    formula INFERRED), averaged over the batch:

    - ``cosine`` (recommended): 1 - cos(f_p, mu_y);
    - ``delta`` (spec 2.5, alternative c): 1 - cos(f_p - f_o, mu_y - f_o),
      with f_o the frozen feature of the same image.

    ``image_features`` f_p [B, D] (unmasked, prompted), ``prototypes`` mu
    [C, D], ``labels`` [B].
    """
    targets = prototypes[labels].to(image_features.dtype)
    if form == "cosine":
        cosine = F.cosine_similarity(image_features, targets, dim=-1)
    elif form == "delta":
        if frozen_image_features is None:
            raise ValueError("the delta form of L_DiR needs the frozen image features")
        frozen = frozen_image_features.to(image_features.dtype)
        cosine = F.cosine_similarity(image_features - frozen, targets - frozen, dim=-1)
    else:
        raise ValueError("L_DiR form {!r}: use one of {}".format(form, ", ".join(DIR_FORMS)))
    return (1 - cosine).mean()


@torch.no_grad()
def class_prototypes(features, labels, num_classes, classnames=None):
    """Prototypes for L_DiR (spec 2.5): mu_c = normalize(mean of the
    normalised features of class c). ``features`` [N, D], ``labels`` [N]
    -> [num_classes, D] float32. Every class needs at least one sample."""
    features = F.normalize(features.float(), dim=-1)
    labels = labels.to(features.device).long()
    sums = torch.zeros(num_classes, features.shape[1], device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes]
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        names = [classnames[i] if classnames else str(i) for i in empty]
        raise UserInputError(
            "DiSa's class prototypes need training images of every class; none for: {}. "
            "Check the dataset split and DATASET.NUM_SHOTS, or set TRAINER.DISA.PROTOTYPE "
            "frozen_text.".format(", ".join(names)))
    return F.normalize(sums / counts.unsqueeze(1).float(), dim=-1)
