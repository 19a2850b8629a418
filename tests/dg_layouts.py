"""Tiny domain-generalization datasets in the DomainBed layout, for tests.

``write_domainbed(root, "PACS")`` writes ``root/PACS/<domain>/<class>/<n>.jpg``
for the dataset's real domain and class folders (a few classes), with images
whose colour depends on the class and whose pattern depends on the domain.
"""
import os
from dataclasses import dataclass

from tests.dataset_layouts import write_image

# DATASET.NAME -> (folder under DATA, domain folders, first class folders)
DOMAINBED = {
    "PACS": ("PACS", ["art_painting", "cartoon", "photo", "sketch"],
             ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]),
    "VLCS": ("VLCS", ["Caltech101", "LabelMe", "SUN09", "VOC2007"],
             ["bird", "car", "chair", "dog", "person"]),
    "OfficeHome": ("office_home", ["Art", "Clipart", "Product", "Real World"],
                   ["Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike"]),
    "TerraIncognita": ("terra_incognita",
                       ["location_100", "location_38", "location_43", "location_46"],
                       ["bird", "bobcat", "cat", "coyote", "dog", "empty"]),
    "DomainNet": ("domain_net", ["clipart", "infograph", "painting", "quickdraw", "real",
                                 "sketch"], ["aircraft_carrier", "airplane", "alarm_clock"]),
}
CONFIG_NAMES = {"PACS": "pacs", "VLCS": "vlcs", "OfficeHome": "office_home",
                "TerraIncognita": "terra_incognita", "DomainNet": "domainnet"}


@dataclass
class WrittenDG:
    name: str
    config_file: str
    root: str
    dataset_dir: str
    domains: list      # folder names on disk
    classes: list      # class folders in label order
    n_per_class: int


def write_domainbed(root, name, n_classes=3, n_per_class=10, image_size=32, domains=None):
    """Write a tiny ``name`` dataset under ``root``; return a :class:`WrittenDG`."""
    folder, all_domains, all_classes = DOMAINBED[name]
    domains = list(domains or all_domains)
    classes = sorted(all_classes[:n_classes])
    dataset_dir = os.path.join(str(root), folder)
    for d_index, domain in enumerate(domains):
        for label, cls in enumerate(classes):
            for i in range(n_per_class):
                path = os.path.join(dataset_dir, domain, cls, "{:05d}.jpg".format(i))
                write_image(path, label, i, image_size=image_size, seed=100 * d_index + label)
    return WrittenDG(name, os.path.join("configs", "datasets", CONFIG_NAMES[name] + ".yaml"),
                     str(root), dataset_dir, domains, classes, n_per_class)
