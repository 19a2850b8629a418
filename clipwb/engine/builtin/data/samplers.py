"""Batch samplers by name (Dassl's ``build_sampler``).

The domain- and class-balanced samplers draw from Python's ``random`` in the
same order as Dassl's, so a fixed seed gives the same batches on both engines.
"""
import copy
import random
from collections import defaultdict

import numpy as np
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler

from clipwb.errors import ConfigError

__all__ = ["RandomSampler", "SequentialSampler", "RandomDomainSampler",
           "SeqDomainSampler", "RandomClassSampler", "build_sampler",
           "AVAI_SAMPLERS"]

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler", "RandomDomainSampler",
                 "SeqDomainSampler", "RandomClassSampler"]


def _indices_by(data_source, attr):
    groups = defaultdict(list)
    for i, item in enumerate(data_source):
        groups[getattr(item, attr)].append(i)
    return groups


def _per_group(batch_size, n_group, what):
    if n_group <= 0 or batch_size % n_group != 0:
        raise ConfigError(
            "batch size {} must be divisible by the number of {} per batch "
            "({})".format(batch_size, what, n_group))
    return batch_size // n_group


class _DomainSampler(Sampler):
    """Shared logic: draw ``n_img_per_domain`` unused indices per chosen domain
    until some domain runs short."""

    def __init__(self, data_source, batch_size, n_domain):
        self.data_source = data_source
        self.domain_dict = _indices_by(data_source, "domain")
        self.domains = list(self.domain_dict.keys())
        self.n_domain = n_domain
        self.batch_size = batch_size
        self.n_img_per_domain = _per_group(batch_size, n_domain, "domains")
        self.length = len(list(self.__iter__()))

    def _pick_domains(self):
        raise NotImplementedError

    def __iter__(self):
        remaining = copy.deepcopy(self.domain_dict)
        order = []
        exhausted = False
        while not exhausted:
            for domain in self._pick_domains():
                chosen = random.sample(remaining[domain], self.n_img_per_domain)
                order.extend(chosen)
                for idx in chosen:
                    remaining[domain].remove(idx)
                if len(remaining[domain]) < self.n_img_per_domain:
                    exhausted = True
        return iter(order)

    def __len__(self):
        return self.length


class RandomDomainSampler(_DomainSampler):
    """Batches of ``n_domain`` random domains x ``batch_size / n_domain`` images.

    ``n_domain <= 0`` (or None) means every domain in each batch.
    """

    def __init__(self, data_source, batch_size, n_domain):
        n_all = len(_indices_by(data_source, "domain"))
        if n_domain is None or n_domain <= 0:
            n_domain = n_all
        super().__init__(data_source, batch_size, n_domain)

    def _pick_domains(self):
        return random.sample(self.domains, self.n_domain)


class SeqDomainSampler(_DomainSampler):
    """Batches with ``batch_size / n_domains`` random images of every domain,
    domains in sorted order."""

    def __init__(self, data_source, batch_size):
        n_all = len(_indices_by(data_source, "domain"))
        super().__init__(data_source, batch_size, n_all)
        self.domains.sort()

    def _pick_domains(self):
        return self.domains


class RandomClassSampler(Sampler):
    """Batches of ``batch_size / n_ins`` random classes x ``n_ins`` images."""

    def __init__(self, data_source, batch_size, n_ins):
        if batch_size < n_ins:
            raise ConfigError("batch_size={} must be no less than n_ins={} "
                              "(DATALOADER.TRAIN_X.N_INS)".format(batch_size, n_ins))
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.index_dic = _indices_by(data_source, "label")
        self.labels = list(self.index_dic.keys())
        if len(self.labels) < self.ncls_per_batch:
            raise ConfigError(
                "RandomClassSampler needs {} classes per batch but the data has "
                "{}; lower the batch size or raise N_INS".format(
                    self.ncls_per_batch, len(self.labels)))
        self.length = len(list(self.__iter__()))

    def __iter__(self):
        chunks = defaultdict(list)
        for label in self.labels:
            idxs = copy.deepcopy(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = np.random.choice(idxs, size=self.n_ins, replace=True)
            random.shuffle(idxs)
            for start in range(0, len(idxs) - self.n_ins + 1, self.n_ins):
                chunks[label].append(
                    [int(i) for i in idxs[start:start + self.n_ins]])
        available = copy.deepcopy(self.labels)
        order = []
        while len(available) >= self.ncls_per_batch:
            for label in random.sample(available, self.ncls_per_batch):
                order.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
        return iter(order)

    def __len__(self):
        return self.length


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32,
                  n_domain=0, n_ins=16):
    """Build the sampler named ``sampler_type`` over ``data_source``."""
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    raise ConfigError("Unknown sampler type: {} (DATALOADER.*.SAMPLER); choose "
                      "from {}".format(sampler_type, AVAI_SAMPLERS))
