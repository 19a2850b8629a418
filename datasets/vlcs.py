"""VLCS (Fang et al., ICCV 2013): 5 classes from 4 photo datasets.

DomainBed layout ``DATA/VLCS/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""
from engine import DATASET_REGISTRY

from .dg_domainbed import DomainBedDataset


# force: real Dassl registers its own readers under some of these names
# (PACS, VLCS, DomainNet); ours (DomainBed layout, GuiDG pools) replace them.
@DATASET_REGISTRY.register(force=True)
class VLCS(DomainBedDataset):
    dataset_dir = "VLCS"
    domains = ["Caltech101", "LabelMe", "SUN09", "VOC2007"]
    source = ("Get it with DomainBed's download script (python -m domainbed.scripts.download; "
              "extract it to VLCS/).")
