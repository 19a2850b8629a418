"""build_optimizer and build_lr_scheduler (with Dassl's warmup semantics)."""
import math

import pytest
import torch
import torch.nn as nn

import clipwb.engine
from clipwb.engine import build_lr_scheduler, build_optimizer, get_cfg_default


class TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.classifier = nn.Linear(4, 2)


def _optim_cfg(**kw):
    cfg = get_cfg_default()
    for key, value in kw.items():
        setattr(cfg.OPTIM, key, value)
    return cfg.OPTIM


@pytest.mark.parametrize("name,cls", [
    ("adam", torch.optim.Adam), ("amsgrad", torch.optim.Adam),
    ("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop),
    ("adamw", torch.optim.AdamW)])
def test_optimizer_kinds(name, cls):
    opt = build_optimizer(TwoPart(), _optim_cfg(NAME=name, LR=0.01))
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 5e-4
    if name == "amsgrad":
        assert group["amsgrad"] is True
    if name == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"] is False


def test_radam_steps():
    model = TwoPart()
    opt = build_optimizer(model, _optim_cfg(NAME="radam", LR=0.01))
    before = model.classifier.weight.detach().clone()
    model.classifier(model.backbone(torch.ones(1, 4))).sum().backward()
    opt.step()
    assert not torch.equal(before, model.classifier.weight)


def test_staged_lr_groups():
    model = TwoPart()
    opt = build_optimizer(model, _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True,
                                            NEW_LAYERS=("classifier",)))
    base, new = opt.param_groups
    assert base["lr"] == pytest.approx(0.01) and new["lr"] == pytest.approx(0.1)
    assert {id(p) for p in new["params"]} == {id(p) for p in
                                              model.classifier.parameters()}


def test_params_list_and_unknown_name():
    params = [nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(params, _optim_cfg(NAME="sgd", LR=0.5))
    assert opt.param_groups[0]["params"][0] is params[0]
    with pytest.raises(ValueError, match="lbfgs"):
        build_optimizer(params, _optim_cfg(NAME="lbfgs"))


def _lr_sequence(n_epochs, **kw):
    """LR seen during each epoch, stepping the scheduler after each one."""
    optim_cfg = _optim_cfg(NAME="sgd", LR=0.1, **kw)
    param = nn.Parameter(torch.zeros(1))
    opt = build_optimizer([param], optim_cfg)
    sched = build_lr_scheduler(opt, optim_cfg)
    lrs = []
    for _ in range(n_epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs, sched


def _cos(epoch, max_epoch, lr=0.1):
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / max_epoch))


def test_single_and_multi_step():
    lrs, _ = _lr_sequence(5, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5)
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    lrs, _ = _lr_sequence(4, LR_SCHEDULER="single_step", MAX_EPOCH=3)  # -1 -> MAX_EPOCH
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.01])
    lrs, _ = _lr_sequence(5, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3))
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_cosine_without_warmup():
    lrs, _ = _lr_sequence(5, LR_SCHEDULER="cosine", MAX_EPOCH=5)
    assert lrs == pytest.approx([_cos(e, 5) for e in range(5)])


def test_constant_warmup_then_cosine():
    lrs, _ = _lr_sequence(6, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=2,
                          WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    expected = [1e-5, 1e-5] + [_cos(e, 5) for e in range(4)]
    assert lrs == pytest.approx(expected)


def test_linear_warmup_then_cosine():
    lrs, _ = _lr_sequence(6, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=3,
                          WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4)
    expected = [1e-4, 0.1 / 3, 0.2 / 3] + [_cos(e, 5) for e in range(3)]
    assert lrs == pytest.approx(expected)


def test_warmup_recount_false_continues_the_successor():
    kw = dict(LR_SCHEDULER="single_step", STEPSIZE=(3,), WARMUP_EPOCH=2,
              WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    recount, _ = _lr_sequence(6, **kw)
    assert recount == pytest.approx([1e-5, 1e-5, 0.1, 0.1, 0.1, 0.01])
    no_recount, _ = _lr_sequence(6, WARMUP_RECOUNT=False, **kw)
    assert no_recount == pytest.approx([1e-5, 1e-5, 0.1, 0.01, 0.01, 0.01])


def test_bad_scheduler_values():
    with pytest.raises(ValueError, match="exponential"):
        _lr_sequence(1, LR_SCHEDULER="exponential")
    with pytest.raises(Exception):
        _lr_sequence(1, WARMUP_EPOCH=1, WARMUP_TYPE="cubic")


@pytest.mark.skipif(clipwb.engine.BACKEND != "builtin", reason="built-in scheduler state")
def test_warmup_state_dict_round_trip(tmp_path):
    lrs, sched = _lr_sequence(3, LR_SCHEDULER="cosine", MAX_EPOCH=5,
                              WARMUP_EPOCH=1, WARMUP_TYPE="linear")
    path = tmp_path / "sched.pt"
    torch.save(sched.state_dict(), path)
    state = torch.load(path, weights_only=True)  # no pickled objects inside
    cont, sched2 = _lr_sequence(0, LR_SCHEDULER="cosine", MAX_EPOCH=5,
                                WARMUP_EPOCH=1, WARMUP_TYPE="linear")
    sched2.load_state_dict(state)
    assert sched2.last_epoch == sched.last_epoch
    assert sched2.successor.last_epoch == sched.successor.last_epoch
