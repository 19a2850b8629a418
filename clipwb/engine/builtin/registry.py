"""Name -> class registries (Dassl's ``Registry``) and ``check_availability``."""
from difflib import SequenceMatcher

from clipwb.errors import ConfigError

__all__ = ["Registry", "check_availability"]


class Registry:
    """Map names to classes or functions, filled by the ``register`` decorator.

    ``REG = Registry("BACKBONE")``; ``@REG.register()`` on a class (or
    ``REG.register(obj)``) adds it under its ``__name__``; ``REG.get(name)``
    returns it. A miss raises an error that lists the registered names.
    """

    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError('An object named "{}" was already registered in "{}" '
                           "registry".format(name, self._name))
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:
            def decorator(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return decorator
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            raise RegistryMissError(
                'Object name "{}" does not exist in "{}" registry; registered '
                "names: {}".format(name, self._name, self.registered_names()))
        return self._obj_map[name]

    def registered_names(self):
        return list(self._obj_map.keys())

    def __contains__(self, name):
        return name in self._obj_map

    def __repr__(self):
        return "Registry({!r}, {})".format(self._name, self.registered_names())


class RegistryMissError(ConfigError, KeyError):
    """A name asked of a registry is not registered."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ""


def _closest(name, candidates):
    best, best_ratio = None, -1.0
    for cand in candidates:
        ratio = SequenceMatcher(None, name, cand).ratio()
        if ratio >= best_ratio:
            best, best_ratio = cand, ratio
    return best


def check_availability(requested, available, what="name"):
    """Raise a ConfigError when ``requested`` is not in ``available``."""
    if requested not in available:
        hint = _closest(requested, available)
        raise ConfigError(
            "{} [{}] is not one of {}{}".format(
                what, requested, list(available),
                " (do you mean [{}]?)".format(hint) if hint else ""))
