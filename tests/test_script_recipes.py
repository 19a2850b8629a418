"""The drop-in's base-to-new scripts give the official recipes' per-dataset
defaults (clipwb.script_recipes) as this repository's scripts do: both run
on the eleven benchmark datasets with a stub train.py, and every call must
carry the same trainer, config, shots, load epoch and options."""
import os
import subprocess

import pytest

from clipwb import dropin
from clipwb.script_recipes import BENCHMARK_DATASETS, RECIPES
from tests.host_checkout import write_host
from tests.test_scripts import (STUB_TRAIN, calls, flag, opts_of, run_script,
                                stub_environment)

#: the script folders whose recipes differ by dataset, and their trainers
METHODS = {"tcp": "TCP", "mma": "MultiModalAdapter", "prograd": "ProGrad", "mmrl": "MMRL"}


def _call_key(argv):
    """What must agree: trainer, config file name, load epoch and the options."""
    return (flag(argv, "--trainer"), os.path.basename(flag(argv, "--config-file")),
            flag(argv, "--load-epoch"), "--eval-only" in argv, opts_of(argv))


@pytest.fixture(scope="module")
def dropin_scripts(tmp_path_factory):
    """The drop-in's files for a CoOp checkout, written into a folder whose
    train.py is the stub (the scripts run ``python train.py``)."""
    root = tmp_path_factory.mktemp("dropin")
    host = write_host(str(root / "host"), "coop")
    files = dropin.host_files(host, str(root / "data"))
    work = root / "work"
    for rel, text in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (work / "train.py").write_text(STUB_TRAIN)
    return work


def test_every_recipe_folder_is_a_baseline_the_dropin_offers():
    assert set(RECIPES) == set(METHODS)
    assert {folder: spec[0] for folder, spec in dropin.BASELINE_METHODS.items()
            if folder in RECIPES} == METHODS


@pytest.mark.parametrize("method", sorted(METHODS))
def test_dropin_scripts_call_train_py_as_this_repository_does(method, dropin_scripts,
                                                               tmp_path):
    env = stub_environment(tmp_path, BENCHMARK_DATASETS)
    bin_dir = tmp_path / "bin"  # `python` of the drop-in's scripts: this interpreter
    bin_dir.mkdir()
    os.symlink(env["PYTHON"], bin_dir / "python")
    dropin_env = dict(env, PATH="{}{}{}".format(bin_dir, os.pathsep, env["PATH"]),
                      STUB_CALLS=str(tmp_path / "dropin_calls.jsonl"))
    for dataset in BENCHMARK_DATASETS:
        for job in ("base2new_train", "base2new_test"):
            ours = run_script(env, "{}/{}.sh".format(method, job), dataset, 1)
            assert ours.returncode == 0, ours.stderr
            # the drop-in's scripts name configs/datasets/<d>.yaml in the checkout
            (dropin_scripts / "configs" / "datasets" / (dataset + ".yaml")).write_text(
                'DATASET:\n  NAME: "{}"\n'.format(dataset))
            theirs = subprocess.run(
                ["bash", "scripts/{}/{}.sh".format(method, job), dataset, "1"],
                cwd=str(dropin_scripts), env=dropin_env, capture_output=True, text=True,
                timeout=60)
            assert theirs.returncode == 0, theirs.stderr
    ours = [_call_key(argv) for argv in calls(env)]
    theirs = [_call_key(argv) for argv in calls(dict(env, STUB_CALLS=dropin_env["STUB_CALLS"]))]
    assert len(ours) == len(theirs) == 2 * len(BENCHMARK_DATASETS)
    assert theirs == ours
    recipe = RECIPES[method]
    shots = {dict(key[4]).get("DATASET.NUM_SHOTS") for key in theirs}
    assert shots == {str(recipe.shots)}
    # every dataset the recipe singles out got something the others did not
    plain = [key for key, dataset in zip(theirs[::2], BENCHMARK_DATASETS)
             if not any(dataset in case[0] for case in recipe.cases())]
    for (datasets, cfg, extra) in recipe.cases():
        key = theirs[2 * BENCHMARK_DATASETS.index(datasets[0])]
        assert key not in plain
        if cfg:
            assert key[1] == cfg + ".yaml"
