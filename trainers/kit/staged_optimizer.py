"""DePT's optimizer: two learning rates by module name (the official
``trainers/optim.py``, a variant of Dassl's ``build_optimizer``).

With ``OPTIM.STAGED_LR`` the model's children whose name contains one of
``OPTIM.NEW_LAYERS`` get ``LR * LR_EXP``, the others ``LR * LR_EXP *
(BASE_LR_MULT / LR_EXP)`` (computed in this order, as the official code
does: ``0.002 * 6.5 * (1 / 6.5)`` is one ulp above 0.002), the others'
group first. Without it, one group at ``LR``. Only parameters that train
are given to the optimizer (the official code passes the frozen ones too,
which SGD skips: they have no gradient).
"""
from clipwb.engine import build_optimizer


def staged_param_groups(named_children, optim_cfg):
    """``[{params, lr} (base), {params, lr} (new)]`` from ``(name, module)``
    pairs (module docstring)."""
    exp = optim_cfg.LR_EXP
    lr = optim_cfg.LR * exp
    base_lr_mult = optim_cfg.BASE_LR_MULT / exp
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    base, new = [], []
    for name, module in named_children:
        group = new if any(layer in name for layer in new_layers) else base
        group.extend(p for p in module.parameters() if p.requires_grad)
    return [{"params": base, "lr": lr * base_lr_mult}, {"params": new, "lr": lr}]


def build_staged_optimizer(named_children, optim_cfg):
    """``OPTIM.NAME`` over the trainable parameters of ``named_children``,
    staged as the module docstring says when ``OPTIM.STAGED_LR``."""
    named_children = list(named_children)
    if not optim_cfg.STAGED_LR:
        params = [p for _, m in named_children for p in m.parameters() if p.requires_grad]
        return build_optimizer(params, optim_cfg)
    groups = staged_param_groups(named_children, optim_cfg)
    plain = optim_cfg.clone()
    plain.defrost()
    plain.STAGED_LR = False  # the groups carry their own learning rates
    return build_optimizer(None, plain, param_groups=groups)
