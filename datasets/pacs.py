"""PACS (Li et al., ICCV 2017): 7 classes in 4 domains (photo, art painting, cartoon, sketch).

DomainBed layout ``DATA/PACS/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""
from engine import DATASET_REGISTRY

from .dg_domainbed import DomainBedDataset


# force: real Dassl registers its own readers under some of these names
# (PACS, VLCS, DomainNet); ours (DomainBed layout, GuiDG pools) replace them.
@DATASET_REGISTRY.register(force=True)
class PACS(DomainBedDataset):
    dataset_dir = "PACS"
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    source = ("Get it with DomainBed's download script (python -m domainbed.scripts.download) "
              "or https://domaingeneralization.github.io (extract it to PACS/).")
