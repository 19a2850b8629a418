"""Office-Home (Venkateswara et al., CVPR 2017): 65 classes in 4 domains.

DomainBed names the last folder ``Real World``; ``Real_World`` is accepted too.

DomainBed layout ``DATA/office_home/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""

from .dg_domainbed import DomainBedDataset


class OfficeHome(DomainBedDataset):
    dataset_dir = "office_home"
    domains = ["Art", "Clipart", "Product", "Real_World"]
    source = ("Get it with https://www.hemanthdv.org/officeHomeDataset.html or DomainBed's "
              "download script (extract it to office_home/).")
