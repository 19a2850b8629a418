"""benchmarks/gpu_check.sh without a GPU: it refuses in one sentence unless
told to run on the CPU; on the CPU (tiny backbone, few steps) every part runs
and the Markdown report has every section; a part past its cap is stopped
with everything it started; the FLOP count of the bound is CLIP's.

No timing is asserted (the 8-minute bound is planned from the caps, which a
test checks add up to the budget)."""
import os
import re
import subprocess
import sys
import time

import pytest
import torch
from clip.model import CLIP
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import gpu_check
from benchmarks.backbones import BACKBONES
from benchmarks.flops import vit_image_macs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINERS = ["ZeroshotCLIP", "IVLP"]
#: the CPU run of the tests: tiny CLIP, two trainers, one step of each, a
#: 4-step training run of the default config (DiSa base-to-novel)
CPU_ARGS = ["--device", "cpu", "--backbone", "tiny", "--trainers"] + TRAINERS + [
    "--steps", "1", "--warmup", "1", "--eval-batches", "1", "--classes", "3",
    "--test-batch", "4", "--throughput-batches", "4", "--throughput-repeats", "2",
    "--peak-size", "256", "--train-steps", "4", "--train-classes", "4",
    "--train-workers", "0"]
SECTIONS = ["## Machine", "## Benchmarks: --prec fp16", "## Benchmarks: --prec amp",
            "## Benchmarks: --prec bf16", "## Evaluation throughput against the FLOP bound",
            "## Training run", "## Parts"]


def sections(text):
    """``{"## Title": body}`` of a Markdown report."""
    parts = re.split(r"^(## .+)$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def table_rows(body):
    lines = [line for line in body.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def test_refuses_without_cuda_in_one_sentence(tmp_path, capsys):
    assert not torch.cuda.is_available()  # conftest hides the GPUs
    out = tmp_path / "report.md"
    assert gpu_check.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == gpu_check.NO_CUDA and err.count(". ") == 0 and "--device cpu" in err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written


def check_report(text, caps):
    """Every section of a CPU run's report, with what each part measured."""
    found = sections(text)
    assert list(found) == SECTIONS
    assert "no GPU: the CPU" in found["## Machine"]
    for prec in gpu_check.PRECISIONS:
        body = found["## Benchmarks: --prec {}".format(prec)]
        assert "- precision: {}".format(prec) in body
        rows = table_rows(body)
        assert [r["trainer"] for r in rows] == TRAINERS
        assert all(r["prec"] == "fp32" for r in rows)  # the CPU runs every PREC as fp32
        assert float(rows[1]["step ms"]) > 0 and float(rows[0]["eval img/s"]) > 0
    body = found["## Evaluation throughput against the FLOP bound"]
    macs = vit_image_macs(CLIP(**BACKBONES["tiny"]).visual)
    assert "{:.4g} G multiply-adds".format(macs / 1e9) in body
    measured, per_trainer = table_rows(body.split("Every trainer")[0]), \
        table_rows(body.split("Every trainer")[1])
    assert [r["batch"] for r in measured] == ["4"] and float(measured[0]["img/s"]) > 0
    assert [r["trainer"] for r in per_trainer] == TRAINERS
    assert all(r["of the bound"].endswith("%") for r in measured + per_trainer)
    body = found["## Training run"]
    assert "DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml` (trainer DiSa)" in body
    assert "2 epochs x 2 batches = 4" in body  # 4 classes x 2 domains, batch 4
    assert "4 logged values, all finite: yes" in body
    assert re.search(r"test: accuracy \d+\.\d % on 8 images", body)
    parts = table_rows(found["## Parts"])
    assert [(p["part"], p["status"]) for p in parts] == [
        (name, "ok") for name in ("bench-fp16", "bench-amp", "bench-bf16", "throughput",
                                  "train")]
    assert [p["cap s"] for p in parts] == caps


@pytest.mark.slow
def test_cpu_run_writes_every_section(tmp_path):
    """The parts in this process (``--inline``: no caps), on the CPU."""
    out = tmp_path / "check" / "report.md"
    code = gpu_check.main(CPU_ARGS + ["--inline", "--out", str(out),
                                      "--workdir", str(tmp_path / "work")])
    assert code == 0
    check_report(out.read_text(), ["-"] * 5)
    # one backbone file for all parts
    assert [str(p.relative_to(tmp_path)) for p in sorted(tmp_path.rglob("clip_*.pt"))] == [
        os.path.join("work", "clip_tiny.pt")]


@pytest.mark.slow
def test_script_runs_its_parts_as_capped_subprocesses(tmp_path):
    """``bash benchmarks/gpu_check.sh`` as a user runs it: the refusal, then
    the CPU run with each part a subprocess under its cap."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    refused = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.strip() == gpu_check.NO_CUDA
    out = tmp_path / "report.md"
    budget = 1800
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"] + CPU_ARGS + [
        "--out", str(out), "--budget-s", str(budget)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=budget + 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    caps = gpu_check.planned_caps(budget)
    check_report(out.read_text(), ["{:.0f}".format(caps[name]) for name in gpu_check.PLAN])
    logs = tmp_path / "report_logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted(n + ".log" for n in gpu_check.PLAN)


def test_caps_add_up_to_the_budget_within_8_minutes():
    assert gpu_check.planned_caps(gpu_check.DEFAULT_BUDGET_S) == gpu_check.PLAN
    assert gpu_check.DEFAULT_BUDGET_S <= 7.5 * 60  # 30 s of the 8 minutes for start-up
    assert sum(gpu_check.planned_caps(120).values()) == pytest.approx(120)
    assert list(gpu_check.PLAN) == ["bench-" + p for p in gpu_check.PRECISIONS] + [
        "throughput", "train"]


def process_alive(pid):
    try:
        with open("/proc/{}/status".format(pid)) as f:
            return not re.search(r"^State:\s+Z", f.read(), re.M)  # a zombie has ended
    except FileNotFoundError:
        return False


def test_part_past_its_cap_is_stopped_with_its_children(tmp_path, monkeypatch):
    """The part and a process it started are stopped at the cap (SIGTERM
    ignored: SIGKILL after the grace time); the status says so."""
    pid_file = tmp_path / "child.pid"
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "open({!r}, 'w').write(str(child.pid))\n"
              "time.sleep(600)\n").format(str(pid_file))
    monkeypatch.setattr(gpu_check, "STOP_GRACE_S", 0.5)
    result = gpu_check.run_subprocess("slow-part", ["-c", script], 3,
                                      str(tmp_path / "slow.log"))
    assert result.status == "stopped at its 3 s cap" and not result.ok
    child = int(pid_file.read_text())
    for _ in range(50):  # the kernel may take a moment to tear it down
        if not process_alive(child):
            break
        time.sleep(0.1)
    assert not process_alive(child)


def test_vit_macs_are_clip_image_encoders_and_vit_b16_is_17_6_g():
    """The count equals torch's FLOP counter on CLIP's tiny image encoder (the
    math attention kernel, whose products the counter sees) and reads the
    quoted 17.6 G multiply-adds for ViT-B/16 at 224 px; ResNets have none."""
    visual = CLIP(**BACKBONES["tiny"]).visual.eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c:
        visual(torch.randn(1, 3, 32, 32))
    assert c.get_total_flops() == 2 * vit_image_macs(visual)
    with torch.device("meta"):
        vit_b16 = CLIP(**BACKBONES["ViT-B/16"]).visual
        rn50 = CLIP(**BACKBONES["RN50"]).visual
    assert vit_image_macs(vit_b16) / 1e9 == pytest.approx(17.6, abs=0.05)
    assert vit_image_macs(rn50) is None
