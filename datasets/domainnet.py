"""DomainNet (Peng et al., ICCV 2019): 345 classes in 6 domains.

DomainBed layout ``DATA/domain_net/<domain>/<class>/<image>``; see
``datasets/dg_domainbed.py`` for the GuiDG pools and splits.
"""

from .dg_domainbed import DomainBedDataset


class DomainNet(DomainBedDataset):
    dataset_dir = "domain_net"
    domains = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]
    source = ("Get it with http://ai.bu.edu/M3SDA/ or DomainBed's download script (extract it "
              "to domain_net/).")
