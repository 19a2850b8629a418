"""Backbone and head registries for ``SimpleNet`` (a small subset of Dassl's).

Backbones: torchvision ResNets (``resnet18/34/50/101/152``; ``pretrained``
loads torchvision's ImageNet weights, which needs the download cache or
internet). Heads: ``mlp``. Register more with ``@BACKBONE_REGISTRY.register()``
on a function returning an ``nn.Module`` with an ``out_features`` attribute.
"""
import torch.nn as nn

from .registry import Registry, check_availability

__all__ = ["BACKBONE_REGISTRY", "HEAD_REGISTRY", "build_backbone", "build_head",
           "Backbone"]

BACKBONE_REGISTRY = Registry("BACKBONE")
HEAD_REGISTRY = Registry("HEAD")


def build_backbone(name, verbose=True, **kwargs):
    """Build the backbone registered as ``name`` (MODEL.BACKBONE.NAME)."""
    check_availability(name, BACKBONE_REGISTRY.registered_names(),
                       what="MODEL.BACKBONE.NAME")
    if verbose:
        print("Backbone: {}".format(name))
    return BACKBONE_REGISTRY.get(name)(**kwargs)


def build_head(name, verbose=True, **kwargs):
    """Build the head registered as ``name`` (MODEL.HEAD.NAME)."""
    check_availability(name, HEAD_REGISTRY.registered_names(),
                       what="MODEL.HEAD.NAME")
    if verbose:
        print("Head: {}".format(name))
    return HEAD_REGISTRY.get(name)(**kwargs)


class Backbone(nn.Module):
    """Base class of backbones: exposes ``out_features`` (feature size)."""

    @property
    def out_features(self):
        return self.__dict__.get("_out_features")


class _TorchvisionResNet(Backbone):
    """A torchvision ResNet without its classifier: images -> pooled features."""

    def __init__(self, arch, pretrained=True, **kwargs):
        super().__init__()
        import torchvision

        weights = "DEFAULT" if pretrained else None
        net = getattr(torchvision.models, arch)(weights=weights)
        self._out_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x):
        return self.net(x)


def _register_resnet(arch):
    def factory(pretrained=True, **kwargs):
        return _TorchvisionResNet(arch, pretrained=pretrained, **kwargs)
    factory.__name__ = arch
    BACKBONE_REGISTRY.register(factory)


for _arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
    _register_resnet(_arch)


class MLP(nn.Module):
    """Linear (+ BatchNorm1d) + activation (+ Dropout) per hidden layer."""

    def __init__(self, in_features=2048, hidden_layers=(), activation="relu",
                 bn=True, dropout=0.0):
        super().__init__()
        if isinstance(hidden_layers, int):
            hidden_layers = [hidden_layers]
        if len(hidden_layers) == 0:
            raise ValueError("MODEL.HEAD.HIDDEN_LAYERS is empty")
        acts = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
        if activation not in acts:
            raise ValueError("MODEL.HEAD.ACTIVATION must be one of {}, got "
                             "{!r}".format(list(acts), activation))
        layers = []
        for dim in hidden_layers:
            layers.append(nn.Linear(in_features, dim))
            if bn:
                layers.append(nn.BatchNorm1d(dim))
            layers.append(acts[activation](inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = dim
        self.mlp = nn.Sequential(*layers)
        self.out_features = hidden_layers[-1]

    def forward(self, x):
        return self.mlp(x)


@HEAD_REGISTRY.register()
def mlp(**kwargs):
    return MLP(**kwargs)
