"""Helpers for the ``TRAINER.<NAME>.*`` keys each trainer module adds."""
from clipwb.engine import CfgNode
from clipwb.errors import ConfigError


def add_trainer_keys(cfg, name, defaults):
    """Add ``cfg.TRAINER.<name>`` with ``defaults`` (a dict of key: value).

    Idempotent: keys that already exist keep their value.
    """
    if name not in cfg.TRAINER:
        cfg.TRAINER[name] = CfgNode()
    node = cfg.TRAINER[name]
    for key, value in defaults.items():
        if key not in node:
            node[key] = value
    return node


def check_choice(value, choices, key):
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError("{} = {!r} is not valid: use one of {}.".format(
            key, value, ", ".join(str(c) for c in choices)))
    return value


def check_min(value, minimum, key):
    """Raise ConfigError unless ``value`` is a number >= ``minimum``."""
    if not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError("{} = {!r} must be a number >= {}.".format(key, value, minimum))
    return value


def check_ivlp_keys(node, prefix):
    """Validate the IVLP-family keys {N_CTX_TEXT, N_CTX_VISION,
    PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION} of ``node`` (named ``prefix``)."""
    check_min(node.N_CTX_TEXT, 1, prefix + ".N_CTX_TEXT")
    check_min(node.N_CTX_VISION, 0, prefix + ".N_CTX_VISION")
    check_min(node.PROMPT_DEPTH_TEXT, 1, prefix + ".PROMPT_DEPTH_TEXT")
    check_min(node.PROMPT_DEPTH_VISION, 0, prefix + ".PROMPT_DEPTH_VISION")


def uses_vision_prompts(node):
    """Whether IVLP-family keys ask for vision prompts."""
    return node.PROMPT_DEPTH_VISION > 0 and node.N_CTX_VISION > 0
