"""ImageNet-A (Hendrycks et al., 2021): natural adversarial examples of 200 ImageNet classes.

The 200-class subset is given by the wnid folders present; labels follow their
sorted order. ``classnames.txt`` is the full 1,000-class file.
"""

from .imagenet_variant import ImageNetVariant, variant_layout


class ImageNetA(ImageNetVariant):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    layout = variant_layout(image_subdir, "<wnid, 200 folders>")
    source = ("https://github.com/hendrycks/natural-adv-examples (extract it to "
              "imagenet-adversarial/)")
