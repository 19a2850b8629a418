"""``build_optimizer`` (Dassl's optimizer factory)."""
import warnings

import torch
import torch.nn as nn

from clipwb.errors import ConfigError

__all__ = ["build_optimizer", "AVAI_OPTIMS"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model, optim_cfg):
    """Base layers get ``LR * BASE_LR_MULT``; ``NEW_LAYERS`` children get ``LR``."""
    if not isinstance(model, nn.Module):
        raise ConfigError("OPTIM.STAGED_LR=True needs an nn.Module passed to "
                          "build_optimizer(), not parameters")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        warnings.warn("OPTIM.NEW_LAYERS is empty (STAGED_LR is useless)")
    base, new = [], []
    for name, module in model.named_children():
        (new if name in new_layers else base).extend(module.parameters())
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
            {"params": new}]


def build_optimizer(model, optim_cfg, param_groups=None):
    """Build ``optim_cfg.NAME`` over ``model`` (a module or an iterable of
    parameters / param groups) with the ``OPTIM.*`` hyper-parameters.

    ``param_groups``, when given, is optimized instead of ``model`` (and
    ``STAGED_LR`` is ignored).
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ConfigError("OPTIM.NAME must be one of {}, but got {!r}".format(
            AVAI_OPTIMS, name))
    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn("OPTIM.STAGED_LR is ignored when param_groups is given; "
                      "set the per-group lr yourself")
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd,
                                betas=betas, amsgrad=name == "amsgrad")
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM,
                               weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING,
                               nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr,
                                   momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd,
                                 betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)
