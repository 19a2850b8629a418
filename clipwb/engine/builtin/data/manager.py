"""``DataManager`` and ``build_data_loader`` (Dassl's data pipeline)."""
import torch
from tabulate import tabulate

from clipwb.errors import ConfigError

from .dataset_base import build_dataset
from .samplers import build_sampler
from .transforms import build_transform
from .wrapper import DatasetWrapper

__all__ = ["DataManager", "build_data_loader"]


def build_data_loader(cfg, sampler_type="SequentialSampler", data_source=None,
                      batch_size=64, n_domain=0, n_ins=2, tfm=None,
                      is_train=True, dataset_wrapper=None):
    """A DataLoader over ``data_source`` wrapped by ``dataset_wrapper``.

    Training loaders drop the last incomplete batch when the data holds at
    least one full batch (as Dassl).
    """
    if not data_source:
        raise ConfigError("build_data_loader(): the data source is empty "
                          "(check DATASET.ROOT, the split and NUM_SHOTS)")
    sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source,
                            batch_size=batch_size, n_domain=n_domain,
                            n_ins=n_ins)
    wrapper = dataset_wrapper or DatasetWrapper
    loader = torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(loader) == 0:
        raise ConfigError(
            "The {} sampler yields no batch for {} items with batch size "
            "{}".format(sampler_type, len(data_source), batch_size))
    return loader


def _loader_args(node):
    return dict(sampler_type=node.SAMPLER, batch_size=node.BATCH_SIZE,
                n_domain=node.N_DOMAIN, n_ins=node.N_INS)


class DataManager:
    """Build the dataset named in the config, its transforms and loaders.

    Attributes: ``dataset``, ``train_loader_x``, ``train_loader_u`` (or None),
    ``val_loader`` (or None), ``test_loader``, ``num_classes``,
    ``num_source_domains``, ``lab2cname``. Prints a summary table when
    ``cfg.VERBOSE``.
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None,
                 dataset_wrapper=None):
        dataset = build_dataset(cfg)
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loaders = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg, data_source=dataset.train_x, tfm=tfm_train, is_train=True,
            dataset_wrapper=dataset_wrapper, **_loader_args(loaders.TRAIN_X))
        self.train_loader_u = None
        if dataset.train_u:
            node = loaders.TRAIN_X if loaders.TRAIN_U.SAME_AS_X else loaders.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg, data_source=dataset.train_u, tfm=tfm_train, is_train=True,
                dataset_wrapper=dataset_wrapper, **_loader_args(node))
        test_args = dict(sampler_type=loaders.TEST.SAMPLER,
                         batch_size=loaders.TEST.BATCH_SIZE, tfm=tfm_test,
                         is_train=False, dataset_wrapper=dataset_wrapper)
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(cfg, data_source=dataset.val,
                                                **test_args)
        self.test_loader = build_data_loader(cfg, data_source=dataset.test,
                                             **test_args)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        """Print Dassl's two-column summary table (dataset, domains, sizes)."""
        ds = self.dataset
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", "{:,}".format(self.num_classes)])
        rows.append(["# train_x", "{:,}".format(len(ds.train_x))])
        if ds.train_u:
            rows.append(["# train_u", "{:,}".format(len(ds.train_u))])
        if ds.val:
            rows.append(["# val", "{:,}".format(len(ds.val))])
        rows.append(["# test", "{:,}".format(len(ds.test))])
        print(tabulate(rows))
