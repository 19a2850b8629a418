"""The official recipes' per-dataset script defaults, for the drop-in's scripts.

Some baselines' official scripts do not run every dataset the same way: a
config for ImageNet, other epochs for two datasets, per-dataset loss
weights, fewer shots. This repository's ``scripts/<method>/`` apply them as
script defaults (``official_*.sh``, ``official_recipe.sh``); the base-to-new
scripts the drop-in writes into a host checkout are standalone, so they get
the same defaults from this table. ``tests/test_script_recipes.py`` runs
both sets of scripts on every benchmark dataset and checks that they call
``train.py`` with the same config, shots and options.

Sources (each the official repository's scripts or train.py, as the
``scripts/<method>/`` file that applies it says):

- TCP: ImageNet and SUN397 train 25 epochs under ``vit_b16_ep100_ctxv1``
  (its train.py), so they are also tested at epoch 25;
- MMA: ImageNet with a training batch of 128 (``vit_b16_ep5_imnet``);
- ProGrad: 4 shots; ``rn50_ep50`` on ImageNet, ``rn50_ep100`` elsewhere;
- MMRL: ``TASK B2N`` on every job (its test-time rule), ``vit_b16_imagenet``
  on ImageNet, the per-dataset ``REG_WEIGHT`` and EuroSAT's ``REP_DIM``
  (its ``trainers/config.py``), on the test jobs too (``REP_DIM`` shapes the
  model).
"""
import collections
from dataclasses import dataclass, field

#: the eleven base-to-new benchmark datasets (dataset config names)
BENCHMARK_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars",
                      "oxford_flowers", "food101", "fgvc_aircraft", "sun397", "dtd",
                      "eurosat", "ucf101")


@dataclass(frozen=True)
class Recipe:
    """``shots``: training shots; ``opts``: KEY VALUE pairs of every job;
    ``cfg_by_dataset``: a config other than the method's default;
    ``opts_by_dataset``: more KEY VALUE pairs (after ``opts``); this
    repository's TCP and MMA scripts give theirs under the default config
    only, which is the config of every drop-in script."""

    shots: int = 16
    opts: tuple = ()
    cfg_by_dataset: dict = field(default_factory=dict)
    opts_by_dataset: dict = field(default_factory=dict)

    def dataset_opts(self, dataset):
        return tuple(self.opts) + tuple(self.opts_by_dataset.get(dataset, ()))

    def cases(self):
        """``[(datasets, cfg or None, opts)]``: the datasets that differ from
        the default, grouped by what they get (in the table's order)."""
        groups = collections.OrderedDict()
        for dataset in BENCHMARK_DATASETS:
            cfg = self.cfg_by_dataset.get(dataset)
            extra = tuple(self.opts_by_dataset.get(dataset, ()))
            if cfg is None and not extra:
                continue
            groups.setdefault((cfg, extra), []).append(dataset)
        return [(tuple(datasets), cfg, extra) for (cfg, extra), datasets in groups.items()]


def _weights(table):
    return {dataset: ("TRAINER.MMRL.REG_WEIGHT", value)
            for value, datasets in table for dataset in datasets}


_MMRL_OPTS = _weights([("7.0", ["stanford_cars"]), ("6.0", ["fgvc_aircraft", "sun397", "dtd"]),
                       ("5.0", ["food101"]), ("4.0", ["oxford_flowers"]), ("3.0", ["ucf101"]),
                       ("0.5", ["imagenet", "caltech101"]), ("0.2", ["oxford_pets"])])
_MMRL_OPTS["eurosat"] = ("TRAINER.MMRL.REP_DIM", "2048", "TRAINER.MMRL.REG_WEIGHT", "0.01")

#: script folder -> its recipe (a method not listed runs every dataset alike)
RECIPES = {
    "tcp": Recipe(opts_by_dataset={"imagenet": ("OPTIM.MAX_EPOCH", "25"),
                                   "sun397": ("OPTIM.MAX_EPOCH", "25")}),
    "mma": Recipe(opts_by_dataset={"imagenet": ("DATALOADER.TRAIN_X.BATCH_SIZE", "128")}),
    "prograd": Recipe(shots=4, cfg_by_dataset={"imagenet": "rn50_ep50"}),
    "mmrl": Recipe(opts=("TASK", "B2N"), cfg_by_dataset={"imagenet": "vit_b16_imagenet"},
                   opts_by_dataset=_MMRL_OPTS),
}


def recipe(folder):
    """The recipe of a script folder (the plain one when it has none)."""
    return RECIPES.get(folder, Recipe())


def max_epoch_opt(opts):
    """``OPTIM.MAX_EPOCH`` among KEY VALUE pairs, or None."""
    pairs = dict(zip(opts[0::2], opts[1::2]))
    return int(pairs["OPTIM.MAX_EPOCH"]) if "OPTIM.MAX_EPOCH" in pairs else None
