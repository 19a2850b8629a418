"""ImageNet-Sketch (Wang et al., 2019): sketches of the 1,000 ImageNet classes."""

from .imagenet_variant import ImageNetVariant, variant_layout


class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    layout = variant_layout(image_subdir, "<wnid>")
    source = "https://github.com/HaohanWang/ImageNet-Sketch (extract it to imagenet-sketch/)"
