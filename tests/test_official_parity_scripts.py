"""The official-parity scripts' own logic (benchmarks/official_parity; the
comparisons themselves need official checkouts and run by hand): parsing
both engines' progress lines, the differences, the step times, the loss
recorder, the outside patches' source rewrites."""
import json

import pytest

from benchmarks.official_parity import loss_recorder, official_patches
from benchmarks.official_parity.compare import compare, parse_iterations, step_seconds

OFFICIAL = """epoch [1/2] batch [1/6] time 0.802 (0.802) data 0.301 (0.301) loss 0.4116 (0.4116) acc 87.5000 (87.5000) lr 1.0000e-05 eta 0:00:09
epoch [1/2] batch [2/6] time 0.210 (0.506) data 0.001 (0.151) loss 0.3903 (0.4010) acc 90.6250 (89.0625) lr 1.0000e-05 eta 0:00:05
epoch [1/2] batch [3/6] time 0.190 (0.401) data 0.001 (0.101) loss 0.5000 (0.4340) acc 80.0000 (86.0000) lr 1.0000e-05 eta 0:00:04
"""
OURS = OFFICIAL.replace("loss 0.5000 (0.4340)", "loss 0.5003 (0.4341)").replace(
    "time 0.190", "time 0.095")


def test_progress_lines_differences_and_step_times():
    official, ours = parse_iterations(OFFICIAL), parse_iterations(OURS)
    assert [key for key, _ in official] == [(1, 1), (1, 2), (1, 3)]
    assert official[0][1] == {"loss": 0.4116, "acc": 87.5, "lr": 1e-05}
    diffs, first = compare(official, ours)
    assert diffs["loss"] == pytest.approx(3e-4) and diffs["acc"] == 0 and diffs["lr"] == 0
    assert first == {"loss": (1, 3)}
    assert step_seconds(OFFICIAL, skip=1) == pytest.approx((0.210 + 0.190) / 2)
    assert step_seconds(OURS, skip=2) == pytest.approx(0.095)
    assert step_seconds("no progress here") is None


def test_loss_recorder_keeps_full_precision(tmp_path, monkeypatch):
    path = tmp_path / "losses.jsonl"
    monkeypatch.setenv(loss_recorder.ENV, str(path))

    class Meter:
        def __init__(self):
            self.seen = []

        def update(self, values):
            self.seen.append(values)

    loss_recorder.install(Meter)
    meter = Meter()
    meter.update({"loss": 0.1234567890123, "acc": 50.0})
    assert meter.seen == [{"loss": 0.1234567890123, "acc": 50.0}]
    assert loss_recorder.read(str(path)) == [{"loss": 0.1234567890123, "acc": 50.0}]
    assert json.loads(path.read_text())["loss"] == repr(0.1234567890123)


def test_source_rewrites_match_once_or_stop(tmp_path):
    loader = official_patches._RewritingLoader(
        "trainers.maple", str(tmp_path / "maple.py"),
        [("self.proj.half()", "self.proj.to(dtype)", "why")])
    (tmp_path / "maple.py").write_text("x = 1\nself.proj.half()\n")
    assert b"self.proj.to(dtype)" in loader.get_data(str(tmp_path / "maple.py"))
    (tmp_path / "maple.py").write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="expected 'self.proj.half\\(\\)' once"):
        loader.get_data(str(tmp_path / "maple.py"))
    # every rewrite of the shipped table names why it is neutral
    assert all(len(r) == 3 and r[2] for rules in official_patches.SOURCE_REWRITES.values()
               for r in rules)
