"""The data side of GuiDG's official protocol, each behind a key whose default
keeps our protocol: ``DATASET.DG_SHOT_SEED`` (the shots drawn with a fixed
seed), ``DATASET.DG_FULL_DATA official`` (DomainBed's 30/70 source split and
20% target holdout for ``NUM_SHOTS 0``) on the toy DG world, and
``TRAINER.<NAME>.SAMPLING replacement`` (the step-2 batches drawn with
replacement, per domain) on the sampler and a resumed CLIPood run."""
import os
import random
from collections import Counter
from types import SimpleNamespace

import pytest
from torchvision.datasets import ImageFolder

import clipwb.datasets
import clipwb.trainers
from clipwb.engine import DATASET_REGISTRY, build_trainer, get_cfg_default
from clipwb.errors import ConfigError, UserInputError
from clipwb.datasets.dg_full_data import domainbed_split, official_full_split, seed_hash
from clipwb.trainers.guidg.sampler import DomainBalancedBatchSampler, with_replacement
from tests.dg_kit import build_toy_dg, make_dg_cfg
from tests.dg_layouts import write_domainbed
from tests.test_resume import check_exact_resume

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["plain", "textured", "noisy"]
N_CLASSES = 25
PER_DOMAIN = 40 * N_CLASSES  # toy images of a domain


def build(root, sources, targets, pool="B", shots=4, seed=1, **dataset_keys):
    # no draw may depend on the global state: Python's random is seeded apart
    return build_toy_dg(root, sources, targets, pool, shots, seed, global_seed=1000 + seed,
                        **dataset_keys)


def paths(items):
    return {item.impath for item in items}


def split_folder(root):
    return os.path.join(root, "toy_shapes", "split_guidg")


# ------------------------------------------------------------------ config keys

def test_the_keys_are_registered_with_the_defaults():
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)
    assert cfg.DATASET.DG_SHOT_SEED == -1 and cfg.DATASET.DG_FULL_DATA == "pools"
    assert cfg.DATASET.DG_FULL_DATA_TRANSFORMS == "domainbed"  # as GuiDG's README
    for name in ("GUIDG", "CLIPOOD", "ERMWISEFT", "UEOWISEFT"):
        assert cfg.TRAINER[name].SAMPLING == "queue"
        assert cfg.TRAINER[name].FULL_DATA_TEST_BATCH == 0  # DATALOADER.TEST.BATCH_SIZE


def test_bad_values_name_the_key_and_the_choices(toy_data):
    with pytest.raises(ConfigError, match=r"DATASET.DG_SHOT_SEED = -2 is not valid: use -1"):
        build(toy_data, SOURCES, ["sketch"], DG_SHOT_SEED=-2)
    with pytest.raises(ConfigError, match=r"DATASET.DG_FULL_DATA = 'full' is not valid: use "
                                          r"pools .* or official"):
        build(toy_data, SOURCES, ["sketch"], shots=0, DG_FULL_DATA="full")
    with pytest.raises(ConfigError, match=r"TRAINER.GUIDG.SAMPLING = 'random' is not valid: "
                                          r"use one of queue, replacement"):
        with_replacement("random", "TRAINER.GUIDG.SAMPLING")
    assert with_replacement("replacement", "K") and not with_replacement("queue", "K")


# ------------------------------------------------------------------ shot seed

def test_a_fixed_shot_seed_gives_every_training_seed_the_same_shots(toy_data):
    fixed = [build(toy_data, SOURCES, ["sketch"], seed=s, DG_SHOT_SEED=0) for s in (1, 2)]
    assert paths(fixed[0].train_x) == paths(fixed[1].train_x)
    assert paths(fixed[0].val) == paths(fixed[1].val)
    default = [build(toy_data, SOURCES, ["sketch"], seed=s) for s in (1, 2)]
    assert paths(default[0].train_x) != paths(default[1].train_x)
    # the shots of seed 0 are one draw, whether the seed is fixed or the training seed
    assert paths(build(toy_data, SOURCES, ["sketch"], seed=0).train_x) == \
        paths(fixed[0].train_x)
    expert = build(toy_data, ["plain"], ["sketch"], pool="A", seed=3, DG_SHOT_SEED=0)
    assert paths(expert.train_x) == {p for p in paths(fixed[0].val) if "/plain/" in p}


def test_the_shot_cache_is_named_by_the_seed_used_and_never_rewritten(toy_data):
    build(toy_data, SOURCES, ["sketch"], seed=1)
    kept = os.path.join(split_folder(toy_data), "shot_4-seed_1", "plain.pkl")
    stamp = os.stat(kept).st_mtime_ns
    build(toy_data, SOURCES, ["sketch"], seed=1, DG_SHOT_SEED=7)
    assert os.path.isfile(os.path.join(split_folder(toy_data), "shot_4-seed_7", "plain.pkl"))
    assert os.stat(kept).st_mtime_ns == stamp
    # seed 1 fixed reads the cache the training seed 1 wrote, unchanged
    again = build(toy_data, SOURCES, ["sketch"], seed=5, DG_SHOT_SEED=1)
    assert os.stat(kept).st_mtime_ns == stamp
    assert paths(again.train_x) == paths(build(toy_data, SOURCES, ["sketch"], seed=1).train_x)


# ------------------------------------------------------------------ full data

def test_domainbed_split_is_its_seeded_permutation():
    # misc.seed_hash(0, env_i) of DomainBed: md5 of "(0, env_i)" modulo 2**31
    assert seed_hash(0, 0) == 894182419 and seed_hash(0, 2) == 1325548499
    items = list(range(10))
    first, rest = domainbed_split(items, 0, 0.7)
    # numpy's RandomState(seed).shuffle, DomainBed's misc.split_dataset
    assert (first, rest) == ([2, 3, 8, 1, 4, 5, 0], [9, 6, 7])
    assert (first, rest) == domainbed_split(items, 0, 0.7)
    assert domainbed_split(items, 1, 0.7)[0] != first
    assert domainbed_split(items, 0, 0.2)[0] == first[:2]  # one permutation per domain
    a, b, test = official_full_split(items, 0)
    assert (b, a) == (first, rest) and test == first[:2]


def test_official_full_data_is_30_70_of_each_source_and_20_percent_of_the_target(toy_data):
    official = dict(shots=0, DG_FULL_DATA="official")
    experts = {d: build(toy_data, [d], ["sketch"], pool="A", **official) for d in SOURCES}
    step2 = build(toy_data, SOURCES, ["sketch"], pool="B", **official)
    assert Counter(i.domain for i in step2.train_x) == {0: 700, 1: 700, 2: 700}
    for index, domain in enumerate(SOURCES):
        expert = experts[domain]
        assert len(expert.train_x) == 300 and len(expert.val) == 700
        pool_a, pool_b = paths(expert.train_x), paths(expert.val)
        assert not pool_a & pool_b
        assert len(pool_a | pool_b) == PER_DOMAIN
        assert all("{0}{1}{0}".format(os.sep, domain) in p for p in pool_a | pool_b)
        # step 2 trains on the 70 % the expert validated on
        assert {i.impath for i in step2.train_x if i.domain == index} == pool_b
    assert len(step2.test) == 200 and all("/sketch/" in p for p in paths(step2.test))
    # the target's 20 % is the start of the permutation whose first 70 % is that
    # domain's step-2 part when it is a source (DomainBed's two holdouts)
    sketch = build(toy_data, ["sketch"], ["plain"], pool="A", **official)
    assert paths(step2.test) <= paths(sketch.val)
    assert not paths(step2.test) & paths(sketch.train_x)
    # deterministic: what the cache holds is the split made afresh from the listing
    cache = os.path.join(split_folder(toy_data), "full_official", "plain.json")
    stamp = os.stat(cache).st_mtime_ns
    listing = experts["plain"].list_domain("plain", {f: i for i, f in enumerate(
        experts["plain"].class_folders)})
    # DomainBed lists a domain with torchvision's ImageFolder: the same order
    folder = experts["plain"].domain_dir("plain")
    assert [i.impath for i in listing] == [p for p, _ in ImageFolder(folder).samples]
    fresh = official_full_split(listing, experts["plain"].env_index("plain"))
    assert [i.impath for i in fresh[0]] == [i.impath for i in experts["plain"].train_x]
    assert experts["plain"].env_index("plain") == 1  # noisy, plain, sketch, textured
    build(toy_data, ["plain"], ["sketch"], pool="A", **official)
    assert os.stat(cache).st_mtime_ns == stamp
    # the 40/40/20 pools stay the default, and official changes nothing with shots
    pools = build(toy_data, SOURCES, ["sketch"], shots=0)
    assert Counter(i.domain for i in pools.train_x) == {0: 400, 1: 400, 2: 400}
    assert paths(build(toy_data, SOURCES, ["sketch"], DG_FULL_DATA="official").train_x) == \
        paths(build(toy_data, SOURCES, ["sketch"]).train_x)


def test_a_changed_folder_stops_an_official_full_data_run(tmp_path):
    pacs = write_domainbed(tmp_path, "PACS", n_classes=2, n_per_class=5,
                           domains=["art_painting", "photo"])
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    cfg.DATASET.NAME = "PACS"
    cfg.DATASET.ROOT = str(pacs.root)
    cfg.DATASET.SOURCE_DOMAINS = ["art_painting"]
    cfg.DATASET.TARGET_DOMAINS = ["photo"]
    cfg.DATASET.NUM_SHOTS = 0
    cfg.DATASET.DG_FULL_DATA = "official"
    ds = DATASET_REGISTRY.get("PACS")(cfg)
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (7, 3, 2)  # pool B: step 2
    os.remove(ds.train_x[0].impath)
    with pytest.raises(UserInputError, match="Full-data split file .*full_official"):
        DATASET_REGISTRY.get("PACS")(cfg)


# ------------------------------------------------------------------ sampling

def domains_data(sizes):
    return [SimpleNamespace(domain=d, label=0) for d, n in enumerate(sizes) for _ in range(n)]


def test_replacement_draws_each_domain_uniformly_with_replacement():
    data = domains_data((3, 5))
    random.seed(0)
    sampler = DomainBalancedBatchSampler(data, per_domain=2, num_batches=600, replacement=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 600
    for batch in batches:  # the per-domain composition of every batch
        assert [data[i].domain for i in batch] == [0, 0, 1, 1]
    small = Counter(i for batch in batches for i in batch[:2])
    assert sorted(small) == [0, 1, 2] and all(300 < n < 500 for n in small.values())
    # with replacement an image comes again before its domain is used up; the
    # queue walks every pass of 3 draws through all 3 images
    def passes(sampler):
        draws = [i for batch in sampler for i in batch[:2]]
        return [sorted(draws[k:k + 3]) for k in range(0, len(draws) - 2, 3)]

    assert any(p != [0, 1, 2] for p in passes(batches))
    queue = DomainBalancedBatchSampler(data, per_domain=2, num_batches=600)
    assert all(p == [0, 1, 2] for p in passes(queue))


def test_replacement_sampler_resumes_exactly_from_its_state_dict():
    data = domains_data((4, 6, 3))
    random.seed(1)
    first = DomainBalancedBatchSampler(data, per_domain=3, num_batches=4, replacement=True)
    list(first)
    state = first.state_dict()
    want = list(first)
    random.seed(99)  # a resumed run builds its sampler from another global state
    resumed = DomainBalancedBatchSampler(data, per_domain=3, num_batches=4, replacement=True)
    assert list(resumed) != want
    resumed.load_state_dict(state)
    assert list(resumed) == want
    with pytest.raises(ValueError, match="state of a replacement sampler for a queue sampler"):
        DomainBalancedBatchSampler(data, per_domain=3).load_state_dict(state)


def test_clipood_with_replacement_sampling_resumes_exactly(tiny_clip_path, tmp_path, capsys):
    pacs = write_domainbed(tmp_path / "data", "PACS", n_classes=3, n_per_class=7,
                           domains=["art_painting", "cartoon", "photo"])
    opts = ["TRAINER.CLIPOOD.SAMPLING", "replacement", "TRAINER.CLIPOOD.BATCH_PER_DOMAIN", "3",
            "TRAINER.CLIPOOD.ITERS_PER_EPOCH", "3", "OPTIM.MAX_EPOCH", "3",
            "TRAIN.PRINT_FREQ", "1", "SEED", "1"]

    def make(name):
        return make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / name, opts)

    trainer = check_exact_resume(capsys, make, 3, interrupt=(1, 1))
    assert trainer.train_loader_x.batch_sampler.replacement
    bad = make_dg_cfg("CLIPood", pacs, tiny_clip_path, tmp_path / "bad",
                      ["TRAINER.CLIPOOD.SAMPLING", "uniform"])
    with pytest.raises(ConfigError, match="TRAINER.CLIPOOD.SAMPLING = 'uniform'"):
        build_trainer(bad)
