"""Image transforms by name (Dassl's ``build_transform``).

Train: the named augmentations in Dassl's fixed order, then ToTensor, then
cutout / normalize / gaussian_noise / instance_norm. Test: resize the shorter
side to ``max(INPUT.SIZE)``, center-crop ``INPUT.SIZE``, ToTensor, normalize.
The AutoAugment policies and ``randaugment`` use torchvision's versions;
``randaugment_fixmatch`` / ``randaugment2`` exist only in real Dassl.
"""
import random

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import (AutoAugment, AutoAugmentPolicy, CenterCrop,
                                    ColorJitter, Compose, GaussianBlur,
                                    Normalize, RandAugment, RandomApply,
                                    RandomCrop, RandomGrayscale,
                                    RandomHorizontalFlip, RandomResizedCrop,
                                    Resize, ToTensor)
from torchvision.transforms.functional import InterpolationMode

from clipwb.errors import ConfigError

__all__ = ["INTERPOLATION_MODES", "AVAI_CHOICES", "build_transform",
           "Random2DTranslation", "InstanceNormalization", "Cutout",
           "GaussianNoise"]

AVAI_CHOICES = [
    "random_flip", "random_resized_crop", "normalize", "instance_norm",
    "random_crop", "random_translation", "center_crop", "cutout",
    "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment",
    "randaugment_fixmatch", "randaugment2", "gaussian_noise", "colorjitter",
    "randomgrayscale", "gaussian_blur",
]

# Names Dassl accepts that only real Dassl implements.
_DASSL_ONLY = {"randaugment_fixmatch", "randaugment2"}

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class Random2DTranslation:
    """With probability ``p``: enlarge by 1/8 and random-crop (height, width);
    otherwise plain resize to (height, width)."""

    def __init__(self, height, width, p=0.5,
                 interpolation=InterpolationMode.BILINEAR):
        self.height, self.width = height, width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img):
        size = [self.height, self.width]
        if random.uniform(0, 1) > self.p:
            return F.resize(img, size, interpolation=self.interpolation)
        big_w = int(round(self.width * 1.125))
        big_h = int(round(self.height * 1.125))
        img = F.resize(img, [big_h, big_w], interpolation=self.interpolation)
        left = int(round(random.uniform(0, big_w - self.width)))
        top = int(round(random.uniform(0, big_h - self.height)))
        return F.crop(img, top, left, self.height, self.width)


class InstanceNormalization:
    """Per-image, per-channel standardisation of a (C, H, W) tensor
    (Ulyanov et al. 2016; Shu et al., DIRT-T, ICLR 2018)."""

    def __init__(self, eps=1e-8):
        self.eps = eps

    def __call__(self, img):
        flat = img.reshape(img.shape[0], -1)
        mean = flat.mean(1).view(-1, 1, 1)
        std = flat.std(1).view(-1, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` at random centres of a
    (C, H, W) tensor (DeVries & Taylor 2017)."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        half = self.length // 2
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            mask[np.clip(y - half, 0, h):np.clip(y + half, 0, h),
                 np.clip(x - half, 0, w):np.clip(x + half, 0, w)] = 0.0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p`` add N(mean, std^2) noise to a tensor."""

    def __init__(self, mean=0, std=0.15, p=0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img):
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


def _interpolation(cfg):
    try:
        return INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    except KeyError:
        raise ConfigError("INPUT.INTERPOLATION={!r} is not one of {}".format(
            cfg.INPUT.INTERPOLATION, list(INTERPOLATION_MODES))) from None


def build_transform(cfg, is_train=True, choices=None):
    """Build the train (``is_train``) or test transform from ``INPUT.*``.

    ``choices`` overrides ``cfg.INPUT.TRANSFORMS``; ``INPUT.NO_TRANSFORM``
    returns None.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = cfg.INPUT.TRANSFORMS if choices is None else choices
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise ConfigError(
                "INPUT.TRANSFORMS: unknown transform {!r}; choose from "
                "{}".format(choice, AVAI_CHOICES))
        if choice in _DASSL_ONLY:
            raise ConfigError(
                "INPUT.TRANSFORMS: {!r} is only implemented by real Dassl; "
                "install Dassl.pytorch (see README) and run with "
                "DASSL_BACKEND=dassl, or use 'randaugment'".format(choice))
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _train_transform(cfg, choices, normalize)
    return _test_transform(cfg, choices, normalize)


def _target_size(cfg):
    return "{}x{}".format(cfg.INPUT.SIZE[0], cfg.INPUT.SIZE[1])


def _train_transform(cfg, choices, normalize):
    print("Building transform_train")
    interp = _interpolation(cfg)
    size = cfg.INPUT.SIZE
    inp = cfg.INPUT
    steps = []

    def add(message, tfm):
        print(message)
        steps.append(tfm)

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        add("+ resize to {}".format(_target_size(cfg)),
            Resize(size, interpolation=interp))
    if "random_translation" in choices:
        add("+ random translation", Random2DTranslation(size[0], size[1]))
    if "random_crop" in choices:
        add("+ random crop (padding = {})".format(inp.CROP_PADDING),
            RandomCrop(size, padding=inp.CROP_PADDING))
    if "random_resized_crop" in choices:
        add("+ random resized crop (size={}, scale={})".format(
            size, inp.RRCROP_SCALE),
            RandomResizedCrop(size, scale=inp.RRCROP_SCALE, interpolation=interp))
    if "random_flip" in choices:
        add("+ random flip", RandomHorizontalFlip())
    for name, policy in (("imagenet_policy", AutoAugmentPolicy.IMAGENET),
                         ("cifar10_policy", AutoAugmentPolicy.CIFAR10),
                         ("svhn_policy", AutoAugmentPolicy.SVHN)):
        if name in choices:
            add("+ {} (torchvision AutoAugment)".format(
                name.replace("_", " ")), AutoAugment(policy))
    if "randaugment" in choices:
        n, m = inp.RANDAUGMENT_N, inp.RANDAUGMENT_M
        add("+ randaugment (n={}, m={})".format(n, m),
            RandAugment(num_ops=n, magnitude=m, num_magnitude_bins=31))
    if "colorjitter" in choices:
        b, c, s, h = (inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S,
                      inp.COLORJITTER_H)
        add("+ color jitter (brightness={}, contrast={}, saturation={}, "
            "hue={})".format(b, c, s, h),
            ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
    if "randomgrayscale" in choices:
        add("+ random gray scale", RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        add("+ gaussian blur (kernel={})".format(inp.GB_K),
            RandomApply([GaussianBlur(inp.GB_K)], p=inp.GB_P))
    add("+ to torch tensor of range [0, 1]", ToTensor())
    if "cutout" in choices:
        add("+ cutout (n_holes={}, length={})".format(
            inp.CUTOUT_N, inp.CUTOUT_LEN), Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN))
    if "normalize" in choices:
        add("+ normalization (mean={}, std={})".format(
            inp.PIXEL_MEAN, inp.PIXEL_STD), normalize)
    if "gaussian_noise" in choices:
        add("+ gaussian noise (mean={}, std={})".format(inp.GN_MEAN, inp.GN_STD),
            GaussianNoise(inp.GN_MEAN, inp.GN_STD))
    if "instance_norm" in choices:
        add("+ instance normalization", InstanceNormalization())
    return Compose(steps)


def _test_transform(cfg, choices, normalize):
    print("Building transform_test")
    size = cfg.INPUT.SIZE
    print("+ resize the smaller edge to {}".format(max(size)))
    print("+ {} center crop".format(_target_size(cfg)))
    print("+ to torch tensor of range [0, 1]")
    steps = [Resize(max(size), interpolation=_interpolation(cfg)),
             CenterCrop(size), ToTensor()]
    if "normalize" in choices:
        print("+ normalization (mean={}, std={})".format(
            cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD))
        steps.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)
