"""Terra Incognita (Beery et al., ECCV 2018): 10 animal classes at 4 camera-trap locations
(DomainBed's subset).

DomainBed layout ``DATA/terra_incognita/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""

from .dg_domainbed import DomainBedDataset


class TerraIncognita(DomainBedDataset):
    dataset_dir = "terra_incognita"
    domains = ["location_100", "location_38", "location_43", "location_46"]
    source = ("Get it with DomainBed's download script (python -m domainbed.scripts.download; "
              "it builds terra_incognita/location_*/<class>/).")
