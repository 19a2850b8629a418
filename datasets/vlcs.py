"""VLCS (Fang et al., ICCV 2013): 5 classes from 4 photo datasets.

DomainBed layout ``DATA/VLCS/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""

from .dg_domainbed import DomainBedDataset


class VLCS(DomainBedDataset):
    dataset_dir = "VLCS"
    domains = ["Caltech101", "LabelMe", "SUN09", "VOC2007"]
    source = ("Get it with DomainBed's download script (python -m domainbed.scripts.download; "
              "extract it to VLCS/).")
