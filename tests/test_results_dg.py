"""scripts/results.py's domain-generalization tables say which preset and
which averaging made each row, read from the runs' config dumps in log.txt."""
import os
import subprocess
import sys

import clipwb.datasets
import clipwb.trainers
from clipwb.engine import get_cfg_default
from tests.test_results import dassl_log, write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PY = os.path.join(REPO, "scripts", "results.py")


def train_py_log(trainer, config, accuracy, *opts):
    """A log.txt as train.py writes it: the arguments, the config dump, the run."""
    cfg = get_cfg_default()
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)
    path = os.path.join("configs", "trainers", "GuiDG", config + ".yaml")
    cfg.merge_from_file(os.path.join(REPO, path))
    cfg.merge_from_list(["TRAINER.NAME", trainer] + list(opts))
    lines = ["***************", "** Arguments **", "***************",
             "backbone: ", "config_file: " + path, "dataset_config_file: pacs.yaml",
             "************", "** Config **", "************", str(cfg),
             "Collecting env info ...", "** System info **"]
    return "\n".join(lines) + "\n" + dassl_log(accuracy)


def run_dir(root, trainer, cfg, target, seed):
    return os.path.join(str(root), "dg", "pacs", "shots_16", trainer, cfg, target,
                        "seed{}".format(seed), "log.txt")


def write_runs(root, runs, seeds=(1, 2)):
    """Seeds' logs of ``runs`` ((trainer, config, accuracy of seed 0) each) on
    pacs -> sketch; seed s scores accuracy + s."""
    for seed in seeds:
        for trainer, config, accuracy in runs:
            write(run_dir(root, trainer, config, "sketch", seed),
                  train_py_log(trainer, config, accuracy + seed))


def test_dg_table_names_the_preset_and_the_averaging_of_each_row(tmp_path):
    write_runs(tmp_path, [("GuiDG", "vit_b16_clipood_official", 90.0),
                          ("GuiDG", "vit_b16_erm_wf", 80.0),
                          ("UEOWiSEFT", "vit_b16_ueo_wf_official", 70.0)])
    # a run whose log has no config dump (written by another tool)
    write(run_dir(tmp_path, "CLIPood", "custom", "sketch", 1), dassl_log(60.0))
    proc = subprocess.run([sys.executable, RESULTS_PY, str(tmp_path / "dg")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ("Domain generalization: pacs (accuracy % on each target domain; "
            "preset official, ours)") in out
    notes = [line for line in out.splitlines() if " shots: " in line]
    assert notes == [
        "CLIPood / custom / 16 shots: no config in log",
        "GuiDG / vit_b16_clipood_official / 16 shots: preset official, BMA beta 0.1",
        "GuiDG / vit_b16_erm_wf / 16 shots: preset ours, WiSE-FT alpha 0.5",
        "UEOWiSEFT / vit_b16_ueo_wf_official / 16 shots: preset official, WiSE-FT alpha "
        "0.5, reset each epoch, UEO weight 0.01",
    ]


def test_a_row_of_runs_with_different_settings_lists_each(tmp_path):
    write(run_dir(tmp_path, "CLIPood", "vit_b16_clipood", "sketch", 1),
          train_py_log("CLIPood", "vit_b16_clipood", 90.0))
    write(run_dir(tmp_path, "CLIPood", "vit_b16_clipood", "sketch", 2),
          train_py_log("CLIPood", "vit_b16_clipood", 91.0, "TRAINER.CLIPOOD.BMA_BETA", 0.1))
    proc = subprocess.run([sys.executable, RESULTS_PY, str(tmp_path / "dg"), "--format",
                           "markdown"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("- CLIPood / vit_b16_clipood / 16 shots: preset ours, BMA beta 0.1 | "
            "preset ours, BMA beta 0.5") in proc.stdout


def test_dg_csv_rows_carry_their_preset_and_averaging(tmp_path):
    import csv
    import io

    write_runs(tmp_path, [("GuiDG", "vit_b16_clipood_official", 90.0),
                          ("GuiDG", "vit_b16_erm_wf", 80.0)])
    proc = subprocess.run([sys.executable, RESULTS_PY, str(tmp_path / "dg"), "--format", "csv"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in csv.DictReader(io.StringIO(proc.stdout)) if r["setting"] == "dg"]
    settings = {(r["cfg"], r["dataset"]): (r["accuracy"], r["settings"]) for r in rows}
    assert settings[("vit_b16_clipood_official", "pacs:sketch")] == (
        "91.50", "preset official, BMA beta 0.1")
    assert settings[("vit_b16_erm_wf", "pacs:sketch")] == ("81.50", "preset ours, WiSE-FT alpha 0.5")
