"""ImageNet-R (Hendrycks et al., 2021): renditions (art, cartoons, ...) of 200 ImageNet classes.

The 200-class subset is given by the wnid folders present; labels follow their
sorted order. ``classnames.txt`` is the full 1,000-class file.
"""

from .imagenet_variant import ImageNetVariant, variant_layout


class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    layout = variant_layout(image_subdir, "<wnid, 200 folders>")
    source = "https://github.com/hendrycks/imagenet-r (extract it to imagenet-rendition/)"
