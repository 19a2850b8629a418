"""The saliency benchmark: its metrics by hand and a tiny run of the CLI."""
import json

import pytest
import torch

from benchmarks import saliency
from benchmarks.saliency_metrics import image_metrics, patch_areas, summarise
from clipwb.toyworld.render import shape_mask


def test_patch_areas_follow_clips_patch_order():
    mask = torch.zeros(1, 4, 6)  # a 2 x 3 grid of 2 px patches
    mask[0, 0:2, 2:4] = 1.0       # patch 1 (row 0, column 1) full
    mask[0, 3, 5] = 0.5           # patch 5 (row 1, column 2): half a pixel
    assert torch.equal(patch_areas(mask, 2), torch.tensor([[0, 4, 0, 0, 0, 0.5]]))


def test_metrics_by_hand():
    # 4 patches of 2 x 2 = 4 px; shape areas 4, 2, 0.2, 0 -> on shape (>= 10 %): 0, 1
    areas = torch.tensor([[4.0, 2.0, 0.2, 0.0], [4.0, 2.0, 0.2, 0.0]])
    saliency = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    kept = torch.tensor([[False, True, False, True], [True, True, True, False]])
    m = image_metrics(saliency, kept, areas, patch=2)
    assert m["pointing"].tolist() == [0.0, 1.0]  # argmax patch 3 (off), patch 0 (on)
    assert m["shape_kept"].tolist() == pytest.approx([2 / 6.2, 6.2 / 6.2])
    background = torch.tensor([0.0, 2.0, 3.8, 4.0])  # 4 - a
    assert m["background_kept"].tolist() == pytest.approx([6 / 9.8, 5.8 / 9.8])
    assert m["iou"].tolist() == pytest.approx([1 / 3, 2 / 3])  # {1} of {0,1,3}; {0,1} of {0,1,2}
    assert background.sum() == pytest.approx(9.8)
    mean, half = summarise({"x": torch.tensor([0.0, 1.0])})["x"]
    assert mean == 0.5 and half == pytest.approx(1.96 * 0.7071068 / 2 ** 0.5)


def test_cli_prints_every_source_with_the_floor_and_ceiling(tmp_path, capsys):
    out = tmp_path / "s.json"
    code = saliency.main(["--root", str(tmp_path / "data"), "--domains", "plain", "sketch",
                          "--per-class", "1", "--random-draws", "3", "--threads", "1",
                          "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    for source in ("text", "value", "vv", "csa", "value_attn", "vv_attn", "csa_attn",
                   "cls_attention", "random", "oracle"):
        assert "| {} ".format(source) in text
    assert "pointing" in text and "kept IoU" in text and "mean over plain, sketch" in text
    data = json.loads(out.read_text())
    results = data["results"]["frozen CLIP"]
    assert set(results) == {"plain", "sketch"} and data["mask_ratio"] == 0.3
    oracle, random = results["plain"]["oracle"], results["plain"]["random"]
    # the ceiling keeps all of the shape; random keeps ~ the kept share of both
    assert oracle["shape_kept"][0] == pytest.approx(1.0, abs=0.02)
    assert oracle["iou"][0] >= max(v["iou"][0] for v in results["plain"].values())
    assert 0.5 < random["shape_kept"][0] < 0.85 and 0.5 < random["background_kept"][0] < 0.85


def test_first_index_and_render_seed_pick_the_images(tmp_path, capsys, monkeypatch):
    drawn = []

    def recording_mask(*args):
        drawn.append(args)
        return shape_mask(*args)

    monkeypatch.setattr(saliency, "shape_mask", recording_mask)
    common = ["--root", str(tmp_path / "data"), "--domains", "sketch", "--per-class", "2",
              "--sources", "cls_attention", "--random-draws", "1", "--threads", "1"]
    out = tmp_path / "other.json"
    assert saliency.main(common + ["--first-index", "5", "--render-seed", "3",
                                   "--json", str(out)]) == 0
    assert drawn == [(label, "sketch", index, 3, 32) for label in range(13) for index in (5, 6)]
    assert "indices 5-6 of render seed 3." in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert (data["first_index"], data["render_seed"]) == (5, 3)
    drawn.clear()
    assert saliency.main(common) == 0  # the default: the dataset's test split
    assert drawn == [(label, "sketch", index, 0, 32) for label in range(13) for index in (20, 21)]
    assert "indices 20-21 of render seed 0 (the dataset's test split)." in capsys.readouterr().out


def test_bad_arguments_are_one_sentence(tmp_path, capsys):
    assert saliency.main(["--root", str(tmp_path), "--mask-ratio", "1.0"]) == 2
    assert "--mask-ratio 1.0 must be a fraction" in capsys.readouterr().err
    assert saliency.main(["--root", str(tmp_path), "--classes", "all", "--model-dir",
                          str(tmp_path)]) == 2
    assert "--classes all" in capsys.readouterr().err
    assert saliency.main(["--root", str(tmp_path / "data"), "--size", "64", "--per-class",
                          "1"]) == 2
    assert "INPUT.SIZE is (64, 64) but this CLIP takes 32x32" in capsys.readouterr().err
    assert saliency.main(["--root", str(tmp_path), "--first-index", "-1"]) == 2
    assert "--first-index -1 and --render-seed 0 must be >= 0." in capsys.readouterr().err
