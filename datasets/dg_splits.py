"""Pool splits and few-shot draws of the GuiDG domain-generalization datasets.

GuiDG (spec section 4.2) splits every domain once, per class, into
pool A (expert training, step 1), pool B (guided fine-tuning, step 2) and a
held-out test part, then draws K shots per class from each pool. Both are
cached on disk and never overwritten:

- ``<cache_dir>/<domain>.json``: the pools in CoOp's split-file format,
  ``{"train": pool A, "val": pool B, "test": test}`` (paths relative to the
  dataset folder);
- ``<cache_dir>/shot_{K}-seed_{SEED}/<domain>.pkl``: ``{"train": K-shot pool A,
  "val": K-shot pool B}``, ``SEED`` the seed the shots were drawn with
  (``DATASET.DG_SHOT_SEED``, or the training seed when it is -1).

With ``NUM_SHOTS 0`` and ``DATASET.DG_FULL_DATA official`` the DomainBed
readers use the official code's full-data split instead of the pools
(:mod:`.dg_full_data`).

Every random draw uses its own ``random.Random`` seeded from the split seed
(or the few-shot seed) and the domain name, so the result does not depend on
which run created a cache first or in which order domains are read.
"""
import os
import random

from clipwb.engine import Datum, read_json
from clipwb.errors import ConfigError, UserInputError

from .splits import (group_by_label, read_datum_pickle, save_split_once, split_pools,
                     write_pickle_once)

#: config key naming the pool a run trains on (the other pool is its val set)
POOL_KEY = "DATASET.DG_TRAIN_POOL"
POOLS = ("A", "B")
#: seed of the one-off pool split (the original code splits with seed 0)
SPLIT_SEED = 0
#: config key of the seed the K shots are drawn with (-1: the training seed)
SHOT_SEED_KEY = "DATASET.DG_SHOT_SEED"
#: config key of the full-data (``NUM_SHOTS 0``) protocol, and its values
FULL_DATA_KEY = "DATASET.DG_FULL_DATA"
FULL_DATA_CHOICES = ("pools", "official")


def extend_cfg(cfg):
    """``DATASET.DG_SHOT_SEED`` (-1: the training seed; the official code draws
    with 0), ``DATASET.DG_FULL_DATA`` (``pools``: the 40/40/20 pools;
    ``official``: DomainBed's 30/70 split and 20% target holdout) and
    ``DATASET.DG_FULL_DATA_TRANSFORMS`` (the transforms of ``official``:
    ``domainbed``, DomainBed's own, or ``clipood``, CLIPood's patch; read by the
    GuiDG trainers, ``trainers/guidg/full_data.py``)."""
    if "DG_SHOT_SEED" not in cfg.DATASET:
        cfg.DATASET.DG_SHOT_SEED = -1
    if "DG_FULL_DATA" not in cfg.DATASET:
        cfg.DATASET.DG_FULL_DATA = "pools"
    if "DG_FULL_DATA_TRANSFORMS" not in cfg.DATASET:
        cfg.DATASET.DG_FULL_DATA_TRANSFORMS = "domainbed"
    return cfg


def train_pool(cfg):
    """The pool the run trains on: ``"A"`` (experts) or ``"B"`` (step 2, default)."""
    value = cfg.DATASET.get("DG_TRAIN_POOL", "B")
    if value not in POOLS:
        raise ConfigError("{} = {!r} is not valid: use A (domain experts, step 1) or B "
                          "(guided fine-tuning, step 2).".format(POOL_KEY, value))
    return value


def shot_seed(cfg):
    """The seed the K shots are drawn with: ``DATASET.DG_SHOT_SEED``, or the
    training seed ``SEED`` when it is -1 (the default)."""
    value = cfg.DATASET.get("DG_SHOT_SEED", -1)
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ConfigError("{} = {!r} is not valid: use -1 (draw the shots with the training "
                          "seed) or a fixed seed >= 0 (the official code uses 0).".format(
                              SHOT_SEED_KEY, value))
    return cfg.SEED if value == -1 else value


def official_full_data(cfg):
    """True when a full-data run (``NUM_SHOTS 0``) uses the official protocol
    (``DATASET.DG_FULL_DATA official``), False for the pools (the default)."""
    value = cfg.DATASET.get("DG_FULL_DATA", "pools")
    if value not in FULL_DATA_CHOICES:
        raise ConfigError("{} = {!r} is not valid: use pools (the 40/40/20 pools, the "
                          "default) or official (DomainBed's 30/70 source split and 20% "
                          "target holdout, for NUM_SHOTS 0).".format(FULL_DATA_KEY, value))
    return value == "official" and cfg.DATASET.NUM_SHOTS < 1


def domain_rng(seed, domain, purpose):
    """A private RNG for one (seed, domain, purpose)."""
    return random.Random("{}|{}|{}".format(purpose, seed, domain))


def draw_shots(items, num_shots, rng):
    """At most ``num_shots`` random items per class (all of a smaller class)."""
    out = []
    for group in group_by_label(items).values():
        out += group if len(group) <= num_shots else rng.sample(group, num_shots)
    return out


def with_domain(items, domain, relabel=None):
    """Copies of ``items`` with domain label ``domain`` (and labels mapped by
    ``relabel``, dropping items whose label it lacks)."""
    out = []
    for item in items:
        label = item.label
        if relabel is not None:
            if label not in relabel:
                continue
            label = relabel[label]
        out.append(Datum(impath=item.impath, label=label, domain=domain,
                         classname=item.classname))
    return out


def _read_pool_file(path, base_dir, what="pool split"):
    """``(A, B, test)`` from a split file, with a clear error if it is unusable."""
    try:
        split = read_json(path)
        if not isinstance(split, dict):
            raise ValueError("not a JSON object")
        out = []
        for key in ("train", "val", "test"):
            items = []
            for relpath, label, classname in split[key]:
                impath = os.path.join(base_dir, relpath)
                if not os.path.isfile(impath):
                    raise ValueError("it lists {}, which does not exist".format(impath))
                items.append(Datum(impath=impath, label=int(label), classname=classname))
            out.append(items)
    except (ValueError, TypeError, KeyError) as err:
        also = " (delete the shot_*-seed_* folders beside it too)" if what == "pool split" else ""
        raise UserInputError(
            "{} file {} is unusable ({}). Delete it; it is rebuilt on the next "
            "run{}.".format(what.capitalize(), path, err, also)) from None
    return tuple(out)


def load_split_once(path, base_dir, make, what, reading):
    """A three-part split of one domain, read from ``path`` or made and saved once.

    ``make()`` returns the parts (called only when ``path`` does not exist);
    ``reading`` is the line printed when the file is read. The file is never
    overwritten: a run that finds it written meanwhile reads it.
    """
    if os.path.isfile(path):
        print(reading)
        return _read_pool_file(path, base_dir, what)
    parts = make()
    if not save_split_once(*parts, path, base_dir, what=what) and os.path.isfile(path):
        return _read_pool_file(path, base_dir, what)  # another run wrote it meanwhile
    return parts


def load_pools(cache_dir, domain, base_dir, list_items, fractions):
    """Pool A / pool B / test of ``domain``, read from its cache or made and cached.

    ``list_items()`` returns every Datum of the domain (called only when the
    cache does not exist). Paths in the cache are relative to ``base_dir``.
    """
    path = os.path.join(cache_dir, "{}.json".format(domain))
    return load_split_once(
        path, base_dir,
        lambda: split_pools(list_items(), fractions, domain_rng(SPLIT_SEED, domain, "pools")),
        "pool split", "Reading the pools of {} from {}".format(domain, path))


def load_shots(cache_dir, domain, pool_a, pool_b, num_shots, seed, key=""):
    """``(K-shot pool A, K-shot pool B)`` of ``domain``, cached per (K, seed).

    ``seed`` is the seed the shots are drawn with (:func:`shot_seed`): the
    cache folder names it, so a fixed seed and a training seed of the same
    value share one cache (the draws are the same). ``num_shots < 1``
    returns the full pools. ``key`` adds a sub-folder (the ImageNet-DG
    target, whose class set the pools were restricted to).
    """
    if num_shots < 1:
        return pool_a, pool_b
    folder = os.path.join(cache_dir, "shot_{}-seed_{}".format(num_shots, seed), key)
    path = os.path.join(folder, "{}.pkl".format(domain))
    if os.path.isfile(path):
        print("Loading the {}-shot pools of {} from {}".format(num_shots, domain, path))
        data = read_datum_pickle(path, ("train", "val"))
        return data["train"], data["val"]
    shots_a = draw_shots(pool_a, num_shots, domain_rng(seed, domain, "shots-A"))
    shots_b = draw_shots(pool_b, num_shots, domain_rng(seed, domain, "shots-B"))
    if write_pickle_once(path, {"train": shots_a, "val": shots_b}):
        print("Saved the {}-shot pools of {} to {}".format(num_shots, domain, path))
    return shots_a, shots_b


def check_domains(dataset, sources, targets):
    """Non-empty source / target lists naming known domains, else ConfigError."""
    for key, names in (("DATASET.SOURCE_DOMAINS", sources),
                       ("DATASET.TARGET_DOMAINS", targets)):
        if not names:
            raise ConfigError("{} is empty for {}: choose from {} (e.g. --source-domains "
                              "{} --target-domains {}).".format(
                                  key, type(dataset).__name__, list(dataset.domains),
                                  " ".join(dataset.domains[1:]), dataset.domains[0]))
        for name in names:
            if name not in dataset.domains:
                raise ConfigError("{}: {!r} is not a domain of {}; choose from {}.".format(
                    key, name, type(dataset).__name__, list(dataset.domains)))
    overlap = sorted(set(sources) & set(targets))
    if overlap and train_pool_is_b(dataset) and getattr(dataset, "official_full", False):
        print("Note: {} are both source and target domains; with {} official a domain's "
              "20% test part lies inside its 70% training part (DomainBed's holdouts), so "
              "this run tests on images it trains on.".format(overlap, FULL_DATA_KEY))
    elif overlap and train_pool_is_b(dataset):
        print("Note: {} are both source and target domains; the target test split is "
              "disjoint from the pools, but this is not a domain-generalization run."
              .format(overlap))


def train_pool_is_b(dataset):
    return getattr(dataset, "pool", "B") == "B"
