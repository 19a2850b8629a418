"""ToyShapesDG: the offline toy world (:mod:`toyworld`) as a GuiDG DG dataset.

The toy images are already in the DomainBed layout, one folder per domain and
one subfolder per class: ``DATA/toy_shapes/images/<domain>/<colour>_<shape>/``
(written on first use by ``clipwb/toyworld/writer.py``, exactly as for ``ToyShapes``).
This view ignores the CoOp split file and goes through the shared DomainBed
reader (``datasets/dg_domainbed.py``): every image of a domain (40 per class)
is split 40/40/20 into pool A / pool B / test, cached in
``DATA/toy_shapes/split_guidg/``, and K shots per class are drawn from each pool.
Domains: ``plain``, ``textured``, ``sketch``, ``noisy``; 25 classes such as
``red circle``. ``configs/datasets/toy_dg.yaml``; ``scripts/guidg/dg.sh toy ...``
reads it.
"""
import os


from clipwb.toyworld.render import DOMAINS
from clipwb.toyworld.writer import DATASET_DIR, IMAGE_DIR, ensure_toy_dataset

from .dg_domainbed import DomainBedDataset
from .dg_splits import check_domains, official_full_data, train_pool
from .sources import data_root


class ToyShapesDG(DomainBedDataset):
    dataset_dir = DATASET_DIR
    domains = list(DOMAINS)
    domain_folders = {domain: os.path.join(IMAGE_DIR, domain) for domain in DOMAINS}
    source = "It is written on first use by clipwb/toyworld/writer.py (python -m clipwb.toyworld.writer --root DATA)."

    def __init__(self, cfg):
        # bad domain names first (a clear error, before anything is written)
        self.pool = train_pool(cfg)
        self.official_full = official_full_data(cfg)
        check_domains(self, list(cfg.DATASET.SOURCE_DOMAINS), list(cfg.DATASET.TARGET_DOMAINS))
        ensure_toy_dataset(data_root(cfg))
        super().__init__(cfg)
