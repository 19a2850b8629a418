"""GuiDG on the offline toy world: ``ToyShapesDG`` (the toy images in the
DomainBed layout) and `bash scripts/guidg/dg.sh toy sketch 1`, leave-one-domain-out
(sources plain, textured, noisy), both steps end to end on the shipped toy CLIP
with the toy.yaml configs, shortened (4 shots, 1 epoch, 3 step-2 batches) so the
suite stays fast."""
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from clipwb.errors import ConfigError
from tests.dg_kit import build_toy_dg
from tests.e2e_helpers import script_python, subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from results import parse_accuracy  # noqa: E402

SOURCES = ["plain", "textured", "noisy"]
N_CLASSES = 25
TEST_PER_CLASS = 8  # 20% of the 40 images (16 train + 4 val + 20 test) of a class and domain


def build(root, sources, targets, pool="B", shots=4, seed=1):
    return build_toy_dg(root, sources, targets, pool, shots, seed)


def test_toy_dg_dataset_reads_the_toy_world_as_domainbed(toy_data):
    ds = build(toy_data, SOURCES, ["sketch"])
    assert ds.domains == ["plain", "textured", "sketch", "noisy"]
    assert ds.num_classes == N_CLASSES and "red circle" in ds.classnames
    assert Counter(d.domain for d in ds.train_x) == {0: 4 * N_CLASSES, 1: 4 * N_CLASSES,
                                                     2: 4 * N_CLASSES}
    assert len(ds.test) == N_CLASSES * TEST_PER_CLASS
    assert all("{0}images{0}sketch{0}".format(os.sep) in d.impath for d in ds.test)
    assert all(d.classname == ds.classnames[d.label] for d in ds.train_x + ds.test)
    # the pools and shots live beside the toy images, not among the domain folders
    folder = os.path.join(toy_data, "toy_shapes")
    assert os.path.isfile(os.path.join(folder, "split_guidg", "sketch.json"))
    assert sorted(os.listdir(os.path.join(folder, "images"))) == sorted(ds.domains)
    # an expert's view: pool A of one domain, its pool B as val, disjoint
    expert = build(toy_data, ["plain"], ["plain"], pool="A")
    assert {d.impath for d in expert.train_x}.isdisjoint({d.impath for d in expert.val})


def test_toy_dg_bad_domain_is_a_config_error(toy_data):
    with pytest.raises(ConfigError, match="'photo' is not a domain of ToyShapesDG"):
        build(toy_data, ["photo"], ["sketch"])


def script_env(toy_data, output):
    env = subprocess_env(**script_python())
    env.update(DATA=toy_data, OUTPUT=output, SHOTS="4",
               OPTS="OPTIM.MAX_EPOCH 1 TRAINER.GUIDG.ITERS_PER_EPOCH 3")
    return env


@pytest.mark.slow
def test_dg_script_on_the_toy_world_runs_both_steps(toy_data, tmp_path):
    env = script_env(toy_data, str(tmp_path / "output"))
    proc = subprocess.run(["bash", "scripts/guidg/dg.sh", "toy", "sketch", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "output" / "dg" / "toy" / "shots_4"
    for domain in SOURCES:  # step 1 with the toy expert config
        expert = out / "GuiDGExpert" / "toy" / ("expert_" + domain) / "seed1"
        assert (expert / "prompt_learner" / "model-best.pth.tar").is_file(), domain
    run = out / "GuiDG" / "toy" / "sketch" / "seed1"
    log = (run / "log.txt").read_text()
    assert "ToyCLIP" in log and "Expert of noisy" in log
    tail = log[log.rindex("=> result"):].splitlines()
    assert [line.split(":")[0] for line in tail[:6]] == [
        "=> result", "* total", "* correct", "* accuracy", "* error", "* macro_f1"]
    assert "* total: {}".format(N_CLASSES * TEST_PER_CLASS) in tail
    accuracy = parse_accuracy(str(run / "log.txt"))
    assert accuracy > 3 * 100 / N_CLASSES  # far above chance (4%)

    assert "Domain generalization: toy" in proc.stdout
    row = re.search(r"^GuiDG / toy CLIP backbone \(toy\.yaml\) / 4 shots"
                    r"\s+([\d.]+) ± [\d.]+\s+([\d.]+)\s*$",
                    proc.stdout, re.M)
    assert row, proc.stdout[-2000:]
    assert float(row.group(1)) == pytest.approx(accuracy, abs=0.01)
    assert float(row.group(2)) == pytest.approx(accuracy, abs=0.01)


def test_dg_script_rejects_a_domain_the_toy_world_lacks(toy_data, tmp_path):
    env = script_env(toy_data, str(tmp_path / "output"))
    proc = subprocess.run(["bash", "scripts/guidg/dg.sh", "toy", "photo", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "photo is not a domain of toy: use one of plain textured sketch noisy" in proc.stderr
