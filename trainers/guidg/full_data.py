"""GuiDG's official full-data protocol on the trainers' side (``NUM_SHOTS 0``
with ``DATASET.DG_FULL_DATA official``, split by ``datasets/dg_full_data.py``):
the image transforms of both steps and the step-2 test batch.

The official code reads full data with DomainBed (``converter_domainbed.py``,
``data_augmentation`` on), whose image-folder datasets give every image of a
domain that is not a test environment the augment transform, and the images
of a test environment the plain one. Step 1 names every domain but the
expert's a test environment, so the expert trains and also validates (its
70 %) on augmented images; step 2 names the target, so the sources' images
are augmented and the target's are plain. Here: the train and val loaders get
the augment transform, the test loader the plain one.

``DATASET.DG_FULL_DATA_TRANSFORMS`` picks the two transforms (at ``INPUT.SIZE``,
torchvision's default bilinear resizing in both, as the originals):

- ``domainbed`` (default; GuiDG's README sets DomainBed up as DomainBed
  instructs, with no change to its transforms): augment = random resized crop
  (scale 0.7-1) + horizontal flip + colour jitter (0.3, 0.3, 0.3, 0.3) + random
  grayscale + ImageNet's mean / std; plain = a resize to the full size that
  does not keep the aspect ratio (a squash) + ImageNet's mean / std (DomainBed
  ``datasets.py``, ``MultipleEnvironmentImageFolder``);
- ``clipood``: the replacement CLIPood's README asks for: augment = random
  resized crop (0.7-1) + flip + CLIP's mean / std; plain = resize of the
  shorter side + center crop + CLIP's mean / std.

``TRAINER.<NAME>.FULL_DATA_TEST_BATCH`` (step 2; 0, the default: the
``DATALOADER.TEST.BATCH_SIZE``): the test batch of a full-data run. The
official full-data test loader batches the per-domain batch size, 16
(``engine.py`` 115), where its few-shot one batches 3 x 16 (126); the test
weights of CMAttn are batch means, so the batch matters.
"""
import torchvision.transforms as T
from torch.utils.data import DataLoader

from clipwb.errors import ConfigError

TRANSFORMS_KEY = "DATASET.DG_FULL_DATA_TRANSFORMS"
TRANSFORMS = ("domainbed", "clipood")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def transforms_choice(cfg):
    """``DATASET.DG_FULL_DATA_TRANSFORMS``, checked."""
    value = cfg.DATASET.get("DG_FULL_DATA_TRANSFORMS", "domainbed")
    if value not in TRANSFORMS:
        raise ConfigError("{} = {!r} is not valid: use domainbed (DomainBed's own transforms, "
                          "as GuiDG's README sets it up) or clipood (CLIPood's patch of "
                          "them).".format(TRANSFORMS_KEY, value))
    return value


def domainbed_transforms(size, choice):
    """``(augment, plain)`` of DomainBed (``domainbed``) or CLIPood's patch
    (``clipood``) at ``size`` (height, width)."""
    size = tuple(size)
    if choice == "domainbed":
        norm = T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        augment = [T.RandomResizedCrop(size, scale=(0.7, 1.0)), T.RandomHorizontalFlip(),
                   T.ColorJitter(0.3, 0.3, 0.3, 0.3), T.RandomGrayscale()]
        plain = [T.Resize(size)]
    else:
        norm = T.Normalize(mean=CLIP_MEAN, std=CLIP_STD)
        augment = [T.RandomResizedCrop(size, scale=(0.7, 1.0)), T.RandomHorizontalFlip()]
        plain = [T.Resize(max(size)), T.CenterCrop(size)]
    return (T.Compose(augment + [T.ToTensor(), norm]),
            T.Compose(plain + [T.ToTensor(), norm]))


def full_data_transforms(cfg, dataset):
    """``(augment, plain)`` when ``dataset`` uses the official full-data
    protocol (its ``official_full``), else None; the key is checked either way."""
    choice = transforms_choice(cfg)
    if not getattr(dataset, "official_full", False):
        return None
    print("Full-data transforms ({} {}): {}; train and val augmented, test plain, as the "
          "official code's DomainBed datasets".format(
              TRANSFORMS_KEY, choice,
              "DomainBed's (colour jitter, grayscale, squash resize, ImageNet mean / std)"
              if choice == "domainbed" else
              "CLIPood's (random resized crop + flip, resize + center crop, CLIP's mean / std)"))
    return domainbed_transforms(cfg.INPUT.SIZE, choice)


def set_full_data_transforms(trainer, transforms):
    """The train and val loaders of ``trainer`` read their images with the
    augment transform, the test loader with the plain one."""
    augment, plain = transforms
    for loader in (trainer.train_loader_x, trainer.val_loader):
        if loader is not None:
            loader.dataset.transform = augment
    trainer.test_loader.dataset.transform = plain


def rebuilt_loader(loader, batch_size=None):
    """``loader`` (a DataLoader from Dassl's ``build_data_loader``) with
    ``drop_last`` False and ``batch_size`` (default: its own): same dataset,
    sampler and workers."""
    return DataLoader(loader.dataset, batch_size=batch_size or loader.batch_size,
                      sampler=loader.sampler, num_workers=loader.num_workers, drop_last=False,
                      pin_memory=loader.pin_memory)


def full_data_test_loader(trainer, batch_size, key):
    """The test loader of a full-data run (``NUM_SHOTS 0``) in batches of
    ``batch_size`` (``key``; 0 keeps ``DATALOADER.TEST.BATCH_SIZE``)."""
    if trainer.cfg.DATASET.NUM_SHOTS >= 1 or batch_size == 0:
        return trainer.test_loader
    print("Test batch: {} (full data, {})".format(batch_size, key))
    return rebuilt_loader(trainer.test_loader, batch_size)

