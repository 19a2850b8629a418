"""The official GuiDG full-data split of a DomainBed domain (``NUM_SHOTS 0``,
``DATASET.DG_FULL_DATA official``).

The official code (``engine.py`` ``get_dataset``, ``converter_domainbed.py``
``get_domainbed_datasets``) reads every domain with DomainBed and splits it
with DomainBed's ``misc.split_dataset(env, int(len(env) * holdout),
misc.seed_hash(0, env_i))``: the domain's images in DomainBed's order (class
folders sorted, file names sorted) are shuffled by
``numpy.random.RandomState(seed_hash(0, env_i))``, where ``env_i`` is the
domain's position among the dataset's sorted domain folders, and the first
``int(n * holdout)`` go to the held-out part. So:

- the expert of a domain (step 1) trains on the last 30 % of that order
  (``holdout = 0.7``), and validates on the first 70 %;
- step 2 trains on those first 70 % of every source domain (the keys step 1
  saved in ``splits/<data>/<domain>_phase2.pkl``);
- a target domain is tested on the first 20 % (``holdout = 0.2``).

The permutation depends only on the seed and the number of images, so the
20 % test part lies inside the 70 % part: the parts are disjoint across the
roles a domain has in a leave-one-domain-out run (source or target), not
within one domain. The split is written once per domain to
``<cache_dir>/full_official/<domain>.json`` as ``{"train": 30 % (pool A),
"val": 70 % (pool B), "test": 20 %}`` and never overwritten.
"""
import hashlib
import os

import numpy as np

from .dg_splits import load_split_once

#: sub-folder of the split cache holding the official full-data splits
CACHE_SUBFOLDER = "full_official"
#: DomainBed holdout fractions of the official code
STEP2_FRACTION = 0.7   # step 1 trains on the rest (30 %)
TEST_FRACTION = 0.2


def seed_hash(*args):
    """DomainBed's ``misc.seed_hash``: the MD5 of ``str(args)`` modulo 2**31."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2 ** 31)


def domainbed_split(items, env_index, fraction):
    """``(first, rest)``: DomainBed's ``split_dataset(items, int(len(items) *
    fraction), seed_hash(0, env_index))``, items in the shuffled order."""
    keys = list(range(len(items)))
    np.random.RandomState(seed_hash(0, env_index)).shuffle(keys)
    n = int(len(items) * fraction)
    return [items[k] for k in keys[:n]], [items[k] for k in keys[n:]]


def official_full_split(items, env_index):
    """``(pool A = 30 %, pool B = 70 %, test = 20 %)`` of a domain's ``items``
    (listed in DomainBed's order), as the official code splits it."""
    pool_b, pool_a = domainbed_split(items, env_index, STEP2_FRACTION)
    test, _ = domainbed_split(items, env_index, TEST_FRACTION)
    return pool_a, pool_b, test


def load_official_full_split(cache_dir, domain, env_index, base_dir, list_items):
    """The official full-data split of ``domain``, read from its cache or made
    from ``list_items()`` and cached once (paths relative to ``base_dir``)."""
    path = os.path.join(cache_dir, CACHE_SUBFOLDER, "{}.json".format(domain))
    return load_split_once(
        path, base_dir, lambda: official_full_split(list_items(), env_index),
        "full-data split", "Reading the full-data split of {} (30/70, 20% test) from {}"
        .format(domain, path))
