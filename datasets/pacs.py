"""PACS (Li et al., ICCV 2017): 7 classes in 4 domains (photo, art painting, cartoon, sketch).

DomainBed layout ``DATA/PACS/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""

from .dg_domainbed import DomainBedDataset


class PACS(DomainBedDataset):
    dataset_dir = "PACS"
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    source = ("Get it with DomainBed's download script (python -m domainbed.scripts.download) "
              "or https://domaingeneralization.github.io (extract it to PACS/).")
