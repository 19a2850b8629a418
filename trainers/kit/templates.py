"""Text templates of the CoOp family (facts reproduced from the original repos).

- ``CUSTOM_TEMPLATES``: CoOp's hand-made prompt per dataset (ZeroshotCLIP).
- ``IMAGENET_TEMPLATES``: the 80 prompts of CLIP's ImageNet prompt engineering.
- ``PROMPTSRC_TEMPLATES``: the 60 of them PromptSRC averages for its frozen
  text features (order as in PromptSRC's ``imagenet_templates.py``).
- ``IMAGENET_TEMPLATES_SELECT``: the 7 prompts ZeroshotCLIP2 ensembles.
- ``PROGRAD_TEMPLATES``: ProGrad's prompt per dataset (its zero-shot CLIP and
  its context initialisation): the category word moved before the class, so
  that dropping the trailing " {}." leaves the initial context words.
"""

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

DEFAULT_TEMPLATE = "a photo of a {}."

PROGRAD_TEMPLATES = dict(
    CUSTOM_TEMPLATES,
    OxfordPets="a type of pet, a photo of a {}.",
    OxfordFlowers="a type of flower, a photo of a {}.",
    FGVCAircraft="a type of aircraft, a photo of a {}.",
    DescribableTextures="a texture of {}.",
    Food101="a type of food, a photo of {}.",
)

IMAGENET_TEMPLATES = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
]

PROMPTSRC_TEMPLATES = (
    # PromptSRC's 60 templates: "a photo of a {}." (ImageNet template 39) first,
    # then the other templates among the first 60 of the 80, in their order
    [IMAGENET_TEMPLATES[39]] + IMAGENET_TEMPLATES[:39] + IMAGENET_TEMPLATES[40:60]
)

IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def custom_template(dataset_name):
    """CoOp's template for ``dataset_name``; ``DEFAULT_TEMPLATE`` for other datasets."""
    if dataset_name not in CUSTOM_TEMPLATES:
        print('No CoOp template for dataset "{}"; using "{}"'.format(
            dataset_name, DEFAULT_TEMPLATE))
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def prograd_template(dataset_name):
    """ProGrad's template for ``dataset_name``; ``DEFAULT_TEMPLATE`` for a
    dataset its table lacks (the official code stops there)."""
    if dataset_name not in PROGRAD_TEMPLATES:
        print('No ProGrad template for dataset "{}"; using "{}"'.format(
            dataset_name, DEFAULT_TEMPLATE))
    return PROGRAD_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


def ensemble_templates(dataset_name):
    """ZeroshotCLIP2's ensemble: the 7 selected prompts, plus the dataset's own
    CoOp template for every dataset but ImageNet (as in CoOp's zsclip.py)."""
    templates = list(IMAGENET_TEMPLATES_SELECT)
    if dataset_name != "ImageNet":
        templates.append(custom_template(dataset_name))
    return templates


def fill_template(template, classname):
    """Put a class name (underscores as spaces) into a template."""
    return template.format(classname.replace("_", " "))
