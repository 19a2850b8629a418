"""Classification evaluator (exact printed block, macro-F1) and compute_accuracy."""
import pytest
import torch

import clipwb.engine

from clipwb.engine import Classification, build_evaluator, compute_accuracy, get_cfg_default


def _scores(preds, n_classes=3):
    out = torch.zeros(len(preds), n_classes)
    out[torch.arange(len(preds)), torch.tensor(preds)] = 1.0
    return out


def test_classification_block_and_macro_f1(capsys):
    cfg = get_cfg_default()
    ev = build_evaluator(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    assert isinstance(ev, Classification)
    capsys.readouterr()
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    ev.process(_scores(y_pred[:4]), torch.tensor(y_true[:4]))
    ev.process(_scores(y_pred[4:]), torch.tensor(y_true[4:]))
    res = ev.evaluate()
    # by hand: F1(0)=2*1/(2+1+1)=0.5, F1(1)=2*2/(4+1+0)=0.8, F1(2)=2/(2+0+1)=2/3
    f1 = 100 * (0.5 + 0.8 + 2 / 3) / 3
    assert res["accuracy"] == pytest.approx(400 / 6)
    assert res["error_rate"] == pytest.approx(100 - 400 / 6)
    assert res["macro_f1"] == pytest.approx(f1)
    assert list(res)[0] == "accuracy"
    out = capsys.readouterr().out
    assert ("=> result\n* total: 6\n* correct: 4\n* accuracy: 66.7%\n"
            "* error: 33.3%\n* macro_f1: {:.1f}%\n".format(f1)) in out


def test_thousands_separator_and_reset(capsys):
    ev = Classification(get_cfg_default())
    ev.process(_scores([0] * 1500, 2), torch.zeros(1500, dtype=torch.long))
    ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,500\n* correct: 1,500\n* accuracy: 100.0%" in out
    ev.reset()
    ev.process(_scores([1], 2), torch.zeros(1, dtype=torch.long))
    assert ev.evaluate()["accuracy"] == 0.0


def test_per_class_result_and_cmat(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = True
    cfg.TEST.COMPUTE_CMAT = True
    cfg.OUTPUT_DIR = str(tmp_path)
    ev = Classification(cfg, lab2cname={0: "cat", 1: "dog"})
    ev.process(_scores([0, 1, 1, 1], 2), torch.tensor([0, 0, 1, 1]))
    res = ev.evaluate()
    out = capsys.readouterr().out
    assert "=> per-class result" in out
    assert "* class: 0 (cat)\ttotal: 2\tcorrect: 1\tacc: 50.0%" in out
    assert "* class: 1 (dog)\ttotal: 2\tcorrect: 2\tacc: 100.0%" in out
    assert "* average: 75.0%" in out
    assert res["perclass_accuracy"] == pytest.approx(75.0)
    cmat = torch.load(tmp_path / "cmat.pt", weights_only=False)
    assert [list(map(float, row)) for row in cmat] == [[0.5, 0.5], [0.0, 1.0]]


def test_compute_accuracy_topk():
    output = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5],
                           [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 2, 0, 0])
    assert compute_accuracy(output, target)[0].item() == pytest.approx(50.0)
    if clipwb.engine.BACKEND == "builtin":  # Dassl's top-k>1 breaks on torch 2.x
        top1, top2 = compute_accuracy(output, target, topk=(1, 2))
        assert top1.item() == pytest.approx(50.0)
        assert top2.item() == pytest.approx(75.0)
    assert compute_accuracy((output, None), target)[0].item() == pytest.approx(50.0)
