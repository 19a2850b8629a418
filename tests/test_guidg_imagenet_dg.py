"""scripts/guidg/imagenet_dg.sh end to end on tiny ImageNet-family folders.

The five CoOp ImageNet datasets are written in their real layouts
(tests/dataset_layouts.py); ImageNetDG (datasets/imagenet_dg.py) reads them
in place. ImageNet-A holds every other class of ImageNet's, so the sources
are cut down to the target's 2 classes. The script trains one expert per
source domain (step 1), then GuiDG on the three sources (step 2), tests on
ImageNet-A and prints the DG table.
"""
import os
import subprocess

import pytest

from tests.dataset_layouts import write_dataset
from tests.e2e_helpers import script_python, subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("imagenet_train", "imagenet_sketch", "imagenetv2")
N_CLASSES = 4              # ImageNet, Sketch and V2
N_TARGET_CLASSES = 2       # ImageNet-A: classes 0 and 2 of ImageNet's
N_TARGET_PER_CLASS = 3


@pytest.fixture(scope="module")
def imagenet_family(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet_dg"))
    written = {
        "ImageNet": write_dataset(root, "ImageNet", n_classes=N_CLASSES, n_per_class=8),
        "ImageNetSketch": write_dataset(root, "ImageNetSketch", n_classes=N_CLASSES,
                                        n_per_class=4),
        "ImageNetV2": write_dataset(root, "ImageNetV2", n_classes=N_CLASSES, n_per_class=4),
        "ImageNetA": write_dataset(root, "ImageNetA", n_classes=N_TARGET_CLASSES,
                                   n_per_class=N_TARGET_PER_CLASS),
        "ImageNetR": write_dataset(root, "ImageNetR", n_classes=N_TARGET_CLASSES,
                                   n_per_class=N_TARGET_PER_CLASS),
    }
    # ImageNetDG names classes from ImageNet's classnames.txt: the target's
    # classes (A and R write their own, longer list) must all be in it.
    imagenet = set(written["ImageNet"].classnames)
    for name in ("ImageNetA", "ImageNetR"):
        assert set(written[name].classnames) <= imagenet
    return root, written


def script_env(data, output, clip_path):
    env = subprocess_env(**script_python())
    env.update(
        DATA=data, OUTPUT=output, SHOTS="2", BACKBONE=clip_path,
        OPTS="INPUT.SIZE '(32, 32)' DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 8 "
             "OPTIM.MAX_EPOCH 1 TRAINER.GUIDG.ITERS_PER_EPOCH 2",
        EXPERT_OPTS="TRAINER.COOP.N_CTX 4 DATALOADER.TRAIN_X.BATCH_SIZE 4")
    return env


@pytest.mark.slow
def test_imagenet_dg_script_runs_both_steps(imagenet_family, tiny_clip_path, tmp_path):
    data, written = imagenet_family
    output = str(tmp_path / "output")
    cmd = ["bash", os.path.join(REPO, "scripts", "guidg", "imagenet_dg.sh"), "imagenet_a", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=240,
                          env=script_env(data, output, tiny_clip_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    out = os.path.join(output, "dg", "imagenet_dg", "shots_2")
    # Step 1: one expert per source domain, for this target's class set.
    for domain in SOURCES:
        assert "Step 1: training the expert of {}".format(domain) in proc.stdout
        expert = os.path.join(out, "GuiDGExpert", "vit_b16_c16_ep31",
                              "expert_{}_for_imagenet_a".format(domain), "seed1")
        assert os.path.isfile(os.path.join(expert, "prompt_learner", "model-best.pth.tar")), \
            expert
    # Step 2: GuiDG on the three sources, tested on the whole of ImageNet-A.
    assert "Step 2: GuiDG on imagenet_train imagenet_sketch imagenetv2 -> imagenet_a" \
        in proc.stdout
    run = os.path.join(out, "GuiDG", "vit_b16_clipood", "imagenet_a", "seed1")
    with open(os.path.join(run, "log.txt"), encoding="utf-8") as f:
        log = f.read()
    for domain in SOURCES:
        assert "Expert of {}".format(domain) in log
    # 12 images of each of the 3 source domains in a batch (the script's value).
    assert "Training batches: 12 images from each of 3 source domains, 2 batches" in log
    tail = log[log.rindex("=> result"):].splitlines()
    assert [line.split(":")[0] for line in tail[:6]] == [
        "=> result", "* total", "* correct", "* accuracy", "* error", "* macro_f1"]
    assert "* total: {}".format(N_TARGET_CLASSES * N_TARGET_PER_CLASS) in tail
    assert os.path.isfile(os.path.join(run, "model", "model.pth.tar-1"))
    # The table of the DG results.
    assert "Domain generalization: imagenet_dg" in proc.stdout, proc.stdout[-3000:]
    assert "imagenet_a" in proc.stdout[proc.stdout.rindex("Domain generalization"):]
