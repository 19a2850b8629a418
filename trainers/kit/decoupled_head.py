"""DePT's decoupled head, shared by every prompt learner it sits on (Zhang et
al., "DePT: Decoupled Prompt Tuning", CVPR 2024; official code
``trainers/elp_{coop,cocoop,kgcoop,maple}.py``, where it is written once per
base method).

The channel-wise transform ("cwT", a FiLM layer per modality) and the
linear probe read the encoders' outputs before normalising (``f_t`` text,
``f_v`` image)::

    cwT(f) = gamma * f + beta                    (gamma = 1, beta = 0 at the start)
    z(f)   = W f + b                             (LINEAR_PROBE.TYPE linear; W: n_cls x D)
    s      = tau * cos(f_v, f_t)                 (the base method's similarity logits)

    training:    L = (1 - w) CE(s, y) + w CE(z([cwT(f_t)_y ; cwT(f_v)]), [y ; y])
    test, base:  (1 - w) s + w z(cwT(f_v))       (TEST_TIME_FUSION; else z alone)
    test, new:   s

``w`` is ``TRAINER.LINEAR_PROBE.WEIGHT``: the text features of the batch's
labels train the probe beside the image features (the official
``_forward_logits_linear_probe``). TYPE ``similarity`` replaces ``z`` by
``tau * cos`` of the transformed features (labels unchanged).

Which rule applies (:func:`uses_base_head`): the base rule for
``DATASET.SUBSAMPLE_CLASSES base``, and for ``all`` on a dataset whose name
contains ``ImageNet`` (cross-dataset: ImageNet is the source, its variants
share its classes); the new rule (similarity only, no probe built) otherwise.
ImageNet-A and ImageNet-R hold 200 of the 1,000 classes: the probe loads the
rows of those classes from an ImageNet checkpoint (:class:`DecoupledHead`'s
``source_rows``).
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

from clipwb.errors import UserInputError

#: LINEAR_PROBE.TYPE values of the official code
HEAD_TYPES = ("similarity", "linear")
#: datasets whose probe keeps the rows of the ImageNet classes they hold
CLIPPED_IMAGENET_VARIANTS = ("ImageNetA", "ImageNetR")


def uses_base_head(subsample_classes, dataset_name):
    """Whether the head's base rule applies (module docstring)."""
    return (subsample_classes == "base"
            or (subsample_classes == "all" and "ImageNet" in dataset_name))


class FiLM(nn.Module):
    """cwT: ``gamma * x + beta`` per channel; float32 parameters, applied in
    ``x``'s dtype (the official ``FiLM``, ``trainers/elp_maple.py``)."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return self.scale.unsqueeze(0).type(x.dtype) * x + self.bias.unsqueeze(0).type(x.dtype)


def cosine_logits(text, image, logit_scale):
    """``tau * cos``: [B, n_cls] from text [n_cls, D] (or per image [B, n_cls, D])."""
    text = text / text.norm(dim=-1, keepdim=True)
    image = image / image.norm(dim=-1, keepdim=True)
    scale = logit_scale.exp()
    if text.dim() == 3:
        return torch.stack([scale * v @ t.t() for v, t in zip(image, text)])
    return scale * image @ text.t()


class DecoupledHead(nn.Module):
    """cwT + linear probe (module docstring). Children keep the official names
    (``film_lp_img``, ``film_lp_text``, ``linear_probe_proj``), so the
    official ``TRAINER.NAMES_TO_UPDATE`` / ``OPTIM.NEW_LAYERS`` substrings
    select them and the checkpoint keys are the official ones.

    ``base``: the base rule applies (a probe of ``n_cls`` classes is built
    for TYPE linear; else it is the identity, as in the official code, and
    only the similarity logits are used). ``dtype``: the probe's (CLIP's dtype
    in the official code); the FiLM parameters are float32.
    """

    def __init__(self, dim, n_cls, head_type="linear", film=True, base=True,
                 dtype=torch.float32):
        super().__init__()
        self.head_type = head_type
        self.film = film
        self.base = base
        if film:
            self.film_lp_img = FiLM(dim)
            self.film_lp_text = FiLM(dim)
        if base and head_type == "linear":
            self.linear_probe_proj = nn.Linear(dim, n_cls).to(dtype)
        else:
            self.linear_probe_proj = nn.Identity()
        #: ImageNet-A / -R: which of the checkpoint's 1,000 probe rows to keep
        self.source_rows = None

    def forward(self, text_raw, image_raw, labels=None, logit_scale=None):
        """Head logits and their labels: training (``labels`` given) the
        probe sees the text features of the labels and the image features,
        ``[t_y ; v]`` with labels ``[y ; y]``; at test the image features
        alone (labels None). ``text_raw`` [n_cls, D] or [B, n_cls, D]."""
        text, image = text_raw, image_raw
        if self.film:
            if text.dim() == 3:  # image-conditioned prompts: one image at a time, as the
                # official loop (the FiLM gradients then sum in its order)
                text = torch.stack([self.film_lp_text(t) for t in text])
            else:
                text = self.film_lp_text(text)
            image = self.film_lp_img(image)
        if self.head_type == "similarity":
            return cosine_logits(text, image, logit_scale), labels
        if labels is None:
            return self._project(image), None
        if text.dim() == 3:  # each image's own text features of its label
            picked = torch.stack([t[label] for t, label in zip(text, labels)])
        else:
            picked = text[labels]
        return self._project(torch.cat([picked, image])), torch.cat([labels, labels])

    def _project(self, features):
        weight = getattr(self.linear_probe_proj, "weight", None)
        if weight is not None:
            features = features.to(weight.dtype)
        return self.linear_probe_proj(features)

    def load_state_dict(self, state_dict, strict=True):
        """As ``nn.Module``'s; with ``source_rows`` set, an ImageNet probe
        (1,000 rows) keeps the rows of this dataset's classes (the official
        ``load_model`` for ImageNet-A / -R)."""
        rows = self.source_rows
        weight = state_dict.get("linear_probe_proj.weight")
        if (rows is not None and weight is not None and weight.shape[0] == len(rows)
                and isinstance(self.linear_probe_proj, nn.Linear)
                and weight.shape[0] != self.linear_probe_proj.out_features):
            keep = torch.as_tensor(rows, dtype=torch.bool)
            state_dict = dict(state_dict)
            for key in ("linear_probe_proj.weight", "linear_probe_proj.bias"):
                if key in state_dict:
                    state_dict[key] = state_dict[key][keep]
            print("State dict is CLIPPED to the {} classes of this dataset".format(int(keep.sum())))
        return super().load_state_dict(state_dict, strict=strict)


def decoupled_loss(logits, labels, head_logits, head_labels, weight):
    """``L = (1 - w) CE(s, y) + w CE(z, y_z)`` (the official ``_loss``);
    returns ``(L, CE(s, y), CE(z, y_z))``."""
    loss_sim = F.cross_entropy(logits, labels)
    loss_head = F.cross_entropy(head_logits, head_labels)
    return (1 - weight) * loss_sim + weight * loss_head, loss_sim, loss_head


def fused_logits(logits, head_logits, weight, fusion=True):
    """Test logits on base classes: ``(1 - w) s + w z`` (TEST_TIME_FUSION),
    else ``z`` alone."""
    if not fusion:
        return head_logits
    return (1 - weight) * logits + weight * head_logits


def imagenet_subset_rows(dataset):
    """For ImageNet-A / -R: one bool per line of the dataset's
    ``classnames.txt`` (ImageNet's 1,000 classes, in its order), True where
    the image folder has that class (the rows of an ImageNet probe to keep)."""
    from clipwb.datasets.imagenet import read_classnames

    path = os.path.join(dataset.dataset_dir, "classnames.txt")
    if not os.path.isfile(path):
        raise UserInputError("{} is missing: the probe of an ImageNet model is clipped to "
                             "this dataset's classes with it (copy DATA/imagenet/"
                             "classnames.txt there).".format(path))
    folders = {f for f in os.listdir(dataset.image_dir)
               if not f.startswith(".") and f != "README.txt"}
    return [wnid in folders for wnid in read_classnames(path)]
