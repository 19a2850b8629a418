"""DiSa end to end: ``scripts/disa/*.sh`` with the real train.py on a tiny
Caltech101 in its real layout and a tiny CLIP (train, resume, test on the new
classes, the table, skipping finished runs), then the saliency view."""
import importlib.util
import os
import sys

import pytest
from PIL import Image

from clipwb.errors import ConfigError
from tests.dataset_layouts import write_dataset
from tests.e2e_helpers import script_python, subprocess_env
from tests.trainer_kit import REPO, run_script, tiny_script_yaml
from clipwb.trainers.disa.trainer import DiSa
from clipwb.trainers.kit.templates import PROMPTSRC_TEMPLATES

SHOTS = 4  # every training image of the tiny dataset (4 per class)

TINY_CFG = tiny_script_yaml("DISA", {"PREC": '"fp32"', "PROMPT_DEPTH_VISION": 2,
                                     "PROMPT_DEPTH_TEXT": 2, "GPA_MEAN": 2, "GPA_STD": 1},
                            transforms=("random_flip", "normalize"), lr=0.0002)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_clip_path):
    tmp = tmp_path_factory.mktemp("disa_e2e")
    data = tmp / "data"
    written = write_dataset(str(data), "caltech101", n_classes=4, n_per_class=8)
    cfg = tmp / "disa_tiny.yaml"
    cfg.write_text(TINY_CFG)
    env = subprocess_env(DATA=str(data), OUTPUT=str(tmp / "output"), CFG=str(cfg),
                         BACKBONE=tiny_clip_path, SHOTS=str(SHOTS), **script_python())
    run_dir = os.path.join(env["OUTPUT"], "base2new", "{}", "caltech101", "shots_%d" % SHOTS,
                           "DiSa", "disa_tiny", "seed1")
    return dict(env=env, tmp=tmp, cfg=str(cfg), written=written, train_dir=run_dir.format(
        "train_base"), test_dir=run_dir.format("test_new"))


def run(env, *args, **extra):
    proc = run_script(env, *args, **extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_base2new_trains_resumes_tests_and_skips(setup):
    env, train_dir, test_dir = setup["env"], setup["train_dir"], setup["test_dir"]
    # an unfinished run: one epoch of the two
    out = run(env, "bash", "scripts/disa/base2new_train.sh", "caltech101", 1,
              OPTS="OPTIM.MAX_EPOCH 1")
    # the model build is in the log; the console has the short header instead
    with open(os.path.join(train_dir, "log.txt")) as f:
        assert "DiSa: L_DiR prototypes of 2 classes" in f.read()
    assert "DiSa: L_DiR prototypes" not in out and "** DiSa on Caltech101" in out
    assert os.path.isfile(os.path.join(train_dir, "prompt_learner", "model.pth.tar-1"))

    # the full job has other options (2 epochs): refused in that folder, until
    # its record of the options is deleted, as the refusal says
    proc = run_script(env, "bash", "scripts/disa/base2new.sh", "caltech101", 1)
    assert proc.returncode != 0 and "Run this job" not in proc.stdout
    record = os.path.join(train_dir, "run_options.txt")
    assert "or delete {} to resume that folder".format(record) in proc.stderr
    os.remove(record)
    # then the train run resumes from epoch 1, then the novel-class test
    out = run(env, "bash", "scripts/disa/base2new.sh", "caltech101", 1)
    assert "Previous epoch: 1" in out
    assert "epoch [2/2]" in out and "epoch [1/2]" not in out
    assert os.path.isfile(os.path.join(train_dir, "prompt_learner", "model.pth.tar-2"))
    assert "loss_cir" in out and "loss_dir" in out
    with open(os.path.join(test_dir, "log.txt")) as f:
        log = f.read()
    assert "* accuracy:" in log and "Loading weights to prompt_learner" in log
    assert "Base-to-novel: DiSa / disa_tiny / %d shots" % SHOTS in out
    row = [line for line in out.splitlines() if line.startswith("caltech101")]
    assert row, out

    # again: both results exist, nothing runs, the table is printed
    out = run(env, "bash", "scripts/disa/base2new.sh", "caltech101", 1)
    assert "The results exist at {}, skipping".format(train_dir) in out
    assert "The results exist at {}, skipping".format(test_dir) in out
    assert "Base-to-novel: DiSa" in out


def view_args(setup, out, *extra):
    return ["--root", setup["env"]["DATA"], "--seed", "1", "--config-file", setup["cfg"],
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--num-images", "3", "--scale", "2", "--out", str(out)] + list(extra) + [
            "DATASET.NUM_SHOTS", str(SHOTS), "DATASET.SUBSAMPLE_CLASSES", "base",
            "MODEL.BACKBONE.NAME", setup["env"]["BACKBONE"]]


def dropped_patches(image, row, panel_size=64, patch=16, titles=0):
    """Patches of ``row`` where the third panel differs from the first
    (``titles``: the height of the title strip above the panels)."""
    pad = 4
    top = titles + pad + row * (panel_size + pad)
    first, third = pad, pad + 2 * (panel_size + pad)
    count = 0
    for py in range(0, panel_size, patch):
        for px in range(0, panel_size, patch):
            a = image.crop((first + px, top + py, first + px + patch, top + py + patch))
            b = image.crop((third + px, top + py, third + px + patch, top + py + patch))
            count += list(a.getdata()) != list(b.getdata())
    return count


def load_view_module():
    spec = importlib.util.spec_from_file_location(
        "saliency_view", os.path.join(REPO, "scripts", "saliency_view.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_saliency_view(setup, tmp_path, capsys, monkeypatch):
    """``scripts/saliency_view.py`` (its ``main``, in this process) on the
    trained run of the test above, then untrained; bad input is one error."""
    view = load_view_module()
    # the frozen text features from 3 templates instead of 60: faster builds
    monkeypatch.setattr(DiSa, "teacher_templates", PROMPTSRC_TEMPLATES[:3])
    train_dir = setup["train_dir"]
    if not os.path.isfile(os.path.join(train_dir, "prompt_learner", "model.pth.tar-2")):
        pytest.skip("needs the run of test_base2new_trains_resumes_tests_and_skips")
    png = tmp_path / "views" / "mask.png"
    view.main(view.build_parser().parse_args(
        view_args(setup, png, "--model-dir", train_dir, "--load-epoch", "2")))
    out = capsys.readouterr().out
    image = Image.open(png).convert("RGB")
    # 3 rows x 3 panels of 32 px x 2, 4 px gaps, under a strip of column titles
    titles = image.height - (3 * 64 + 4 * 4)
    assert image.width == 3 * 64 + 4 * 4 and titles > 0
    for column in range(3):  # each column has its (dark) title text above the panel
        strip = image.crop((4 + column * 68, 0, 4 + column * 68 + 64, titles)).convert("L")
        assert min(strip.getdata()) < 100
    assert "Cyan" not in out  # not the toy world: no ground truth to outline
    assert out.count("kept 11 of 16 patches") == 3
    assert "Loading weights to prompt_learner" in out
    for row in range(3):
        assert dropped_patches(image, row, titles=titles) == 16 - 11

    untrained = tmp_path / "untrained.png"
    view.main(view.build_parser().parse_args(
        view_args(setup, untrained, "--split", "train") + ["TRAINER.DISA.MASK_RATIO", "0.5"]))
    out = capsys.readouterr().out
    assert Image.open(untrained).size == (208, 208 + titles)
    assert out.count("kept 8 of 16 patches") == 3 and "Loading weights" not in out
    assert all(dropped_patches(Image.open(untrained).convert("RGB"), row, titles=titles) == 8
               for row in range(3))
    bad = view.build_parser().parse_args(view_args(setup, png, "--num-images", "0"))
    with pytest.raises(ConfigError, match="--num-images"):
        view.main(bad)
