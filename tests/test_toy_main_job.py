"""The main job on the offline toy world: `bash scripts/<method>/base2new.sh toy 1`.

Every base-to-novel method runs its real script on the shipped toy CLIP and
the procedural toy dataset (written on first use), with a shortened schedule
(1 epoch, 2 shots) so the suite stays fast; the printed table must match the
accuracies in the two logs.
"""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
from results import parse_accuracy  # noqa: E402
from tests.e2e_helpers import script_python, subprocess_env  # noqa: E402

METHODS = {
    "zsclip": "ZeroshotCLIP", "coop": "CoOp", "kgcoop": "KgCoOp", "cocoop": "CoCoOp",
    "ivlp": "IVLP", "maple": "MaPLe", "promptsrc": "PromptSRC", "disa": "DiSa", "isp": "ISP",
    "prograd": "ProGrad", "tcp": "TCP", "mma": "MultiModalAdapter", "mmrl": "MMRL",
    "coop_dept": "ExtrasLinearProbeCoOp", "cocoop_dept": "ExtrasLinearProbeCoCoOp",
    "kgcoop_dept": "ExtrasLinearProbeKgCoOp", "maple_dept": "ExtrasLinearProbeMaPLe",
    "promptsrc_dept": "ExtrasLinearProbePromptSRC",
}


# The README's main job (DiSa) and one of the newest baselines (KgCoOp) run in
# the default set; the others in the slow set (pytest -m slow).
DEFAULT_SET = ("disa", "kgcoop")


@pytest.mark.parametrize("method", [m if m in DEFAULT_SET
                                    else pytest.param(m, marks=pytest.mark.slow)
                                    for m in sorted(METHODS)])
def test_base2new_on_the_toy_world_prints_the_table(method, toy_data, tmp_path):
    trainer = METHODS[method]
    env = subprocess_env(DATA=toy_data, OUTPUT=str(tmp_path / "output"), SHOTS="2",
                         OPTS="OPTIM.MAX_EPOCH 1", **script_python())
    proc = subprocess.run(["bash", "scripts/{}/base2new.sh".format(method), "toy", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = {}
    for phase in ("train_base", "test_new"):
        run_dir = tmp_path / "output" / "base2new" / phase / "toy" / "shots_2" / trainer / "toy" / "seed1"
        acc = parse_accuracy(str(run_dir / "log.txt"))
        assert acc is not None, "no '* accuracy:' in {}".format(run_dir)
        runs[phase] = acc
    base, novel = runs["train_base"], runs["test_new"]
    # zero-shot novel accuracy of the toy CLIP is far above chance (1/12)
    assert novel > 3 * 100 / 12
    row = re.search(r"^toy\s+([\d.]+) ± [\d.]+\s+([\d.]+) ± [\d.]+\s+([\d.]+)", proc.stdout, re.M)
    assert row, proc.stdout[-2000:]
    assert float(row.group(1)) == pytest.approx(base, abs=0.01)
    assert float(row.group(2)) == pytest.approx(novel, abs=0.01)
    assert float(row.group(3)) == pytest.approx(2 * base * novel / (base + novel), abs=0.01)
