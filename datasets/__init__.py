"""The datasets of the project, installed as the package ``clipwb.datasets``.

This folder is the CoOp-family face (``datasets/<dataset>.py``, one reader a
file, CoOp's class names as ``DATASET.NAME``), imported only as
``clipwb.datasets`` so that it never collides with a host checkout's own
``datasets`` package (nor Hugging Face's). Importing it registers nothing:
:mod:`clipwb.plugin` registers the readers.
"""
if __name__ != "clipwb.datasets":
    raise ImportError(
        "This 'datasets' folder is the package clipwb.datasets: import clipwb.datasets "
        "(after 'pip install -e .'), not {!r}.".format(__name__))

from .splits import SUBSAMPLE_CHOICES  # noqa: E402

#: module -> class names, the CoOp benchmark readers first.
DATASET_MODULES = {
    "imagenet": ["ImageNet"], "caltech101": ["Caltech101"], "oxford_pets": ["OxfordPets"],
    "stanford_cars": ["StanfordCars"], "oxford_flowers": ["OxfordFlowers"],
    "food101": ["Food101"], "fgvc_aircraft": ["FGVCAircraft"], "sun397": ["SUN397"],
    "dtd": ["DescribableTextures"], "eurosat": ["EuroSAT"], "ucf101": ["UCF101"],
    "imagenetv2": ["ImageNetV2"], "imagenet_sketch": ["ImageNetSketch"],
    "imagenet_a": ["ImageNetA"], "imagenet_r": ["ImageNetR"],
    # GuiDG's domain-generalization readers (DomainBed layout)
    "pacs": ["PACS"], "vlcs": ["VLCS"], "office_home": ["OfficeHome"],
    "terra_incognita": ["TerraIncognita"], "domainnet": ["DomainNet"],
    "imagenet_dg": ["ImageNetDG"],
    # the offline toy world and its GuiDG view
    "toy": ["ToyShapes"], "toy_dg": ["ToyShapesDG"],
    # your own images: a folder of class folders (configs/datasets/image_folder.yaml)
    "image_folder": ["ImageFolder"],
}

#: The CoOp benchmark datasets (base-to-novel, cross-dataset, ImageNet variants).
DATASET_NAMES = (
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
    "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101",
    "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR",
)

#: GuiDG's DomainBed readers. Real Dassl registers readers of its own (another
#: layout, no GuiDG pools) under some of these names; from this repository's
#: root ours replace those, inside a host checkout the registered one stays.
DG_DATASET_NAMES = ("PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet")


def dataset_classes():
    """``{name: class}`` of every reader, in :data:`DATASET_MODULES` order."""
    import importlib

    classes = {}
    for module_name, names in DATASET_MODULES.items():
        module = importlib.import_module("clipwb.datasets." + module_name)
        for name in names:
            classes[name] = getattr(module, name)
    return classes


def extend_cfg(cfg):
    """Add the dataset keys the CoOp family adds to Dassl's defaults (idempotent).

    ``DATASET.SUBSAMPLE_CLASSES``: one of ``all`` / ``base`` / ``new``;
    ``DATASET.IMAGE_FOLDER.*``: the image-folder reader's split settings;
    ``DATASET.DG_SHOT_SEED`` / ``DG_FULL_DATA`` / ``DG_FULL_DATA_TRANSFORMS``:
    the GuiDG DG readers' shot seed, full-data protocol and its transforms
    (``datasets/dg_splits.py``).
    """
    from .dg_splits import extend_cfg as dg_keys
    from .image_folder import extend_cfg as image_folder_keys

    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    return dg_keys(image_folder_keys(cfg))


__all__ = ["DATASET_MODULES", "DATASET_NAMES", "DG_DATASET_NAMES", "SUBSAMPLE_CHOICES",
           "dataset_classes", "extend_cfg"]
