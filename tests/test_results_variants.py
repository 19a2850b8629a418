"""results.py on variant run folders (the scripts' extra arguments or TAG) and
on the toy CLIP's configs: each variant is its own row, and a toy-CLIP run on
another dataset reads as the toy CLIP backbone, not the toy dataset."""
import os
import re
import subprocess
import sys

from clipwb.results import classify_run_dir, variants
from clipwb.results.runs import BASE2NEW_PHASES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, rel, accuracy):
    run = os.path.join(root, rel)
    os.makedirs(run)
    with open(os.path.join(run, "log.txt"), "w") as f:
        f.write("=> result\n* total: 100\n* accuracy: {:.1f}%\n".format(accuracy))
    return run


def results(*args):
    proc = subprocess.run([sys.executable, "scripts/results.py"] + list(args), cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_split_variant_finds_the_level_below_the_config():
    b2n = "out/base2new/train_base/dtd/shots_16/DiSa/cfg".split("/")
    assert variants.split_variant(b2n + ["seed1"], BASE2NEW_PHASES) == (b2n + ["seed1"], None)
    assert variants.split_variant(b2n + ["SALIENCY_text", "seed1"], BASE2NEW_PHASES) == (
        b2n + ["seed1"], "SALIENCY_text")
    dg = "out/dg/pacs/shots_16/GuiDG/cfg".split("/")
    assert variants.split_variant(dg + ["sketch", "seed2"], BASE2NEW_PHASES) == (
        dg + ["sketch", "seed2"], None)
    assert variants.split_variant(dg + ["b32", "sketch", "seed2"], BASE2NEW_PHASES) == (
        dg + ["sketch", "seed2"], "b32")
    few_shot = "out/dtd/CoOp/cfg_4shots/nctx16_cscFalse_ctpend/b32/seed1".split("/")
    assert variants.split_variant(few_shot, BASE2NEW_PHASES) == (few_shot, None)
    assert classify_run_dir("/o/dg/pacs/shots_16/GuiDG/cfg/b32/sketch/seed2") == dict(
        setting="dg", phase="sketch", dataset="pacs", shots=16, trainer="GuiDG", cfg="cfg/b32",
        seed=2)
    assert classify_run_dir("/o/dg/pacs/shots_16/GuiDGExpert/e/b32/expert_photo/seed2")[
        "setting"] == "dg-expert"


def test_cfg_label_names_the_toy_clip():
    assert variants.cfg_label("toy") == "toy CLIP backbone (toy.yaml)"
    assert variants.cfg_label("toy/SALIENCY_text") == "toy CLIP backbone (toy.yaml)/SALIENCY_text"
    assert variants.cfg_label("toy_official") == "toy CLIP backbone (toy_official.yaml)"
    assert variants.cfg_label("vit_b16/toy") == "vit_b16/toy"
    assert variants.cfg_label("toyish") == "toyish"


def test_variants_are_rows_of_their_own_and_the_toy_clip_is_named(tmp_path):
    root = str(tmp_path / "base2new")
    for phase, acc in (("train_base", 80.0), ("test_new", 60.0)):
        write_run(root, "{}/image_folder/shots_2/DiSa/toy/seed1".format(phase), acc)
        write_run(root, "{}/image_folder/shots_2/DiSa/toy/SALIENCY_text/seed1".format(phase),
                  acc + 10)
    out = results(root, "--setting", "base2new")
    lines = [re.sub(r"\s{2,}", " | ", line) for line in out.splitlines()]
    assert "DiSa / toy CLIP backbone (toy.yaml) / 2 shots | 80.00 ± 0.00 | 60.00 ± 0.00 | " \
           "{:.2f} | 1".format(2 * 80 * 60 / 140.0) in lines, out
    assert "DiSa / toy CLIP backbone (toy.yaml)/SALIENCY_text / 2 shots | 90.00 ± 0.00 | " \
           "70.00 ± 0.00 | {:.2f} | 1".format(2 * 90 * 70 / 160.0) in lines, out
    assert "/ toy / " not in out
    # the variant alone, as the scripts' table asks for it
    out = results(root, "--setting", "base2new", "--cfg", "toy/SALIENCY_text")
    assert "Base-to-novel: DiSa / toy CLIP backbone (toy.yaml)/SALIENCY_text / 2 shots" in out
    assert "80.00" not in out
