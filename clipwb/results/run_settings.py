"""What made a run, read back from its ``log.txt``: the preset and, for
GuiDG's step 2 and its baselines, the weight averaging.

``train.py`` (ours, or a CoOp-family host's) writes the arguments
(``config_file: PATH``) and the whole config (``** Config **``, then yacs's
dump: ``KEY: value`` lines, two spaces of indent a level) into the log. From
those:

- the preset: ``official`` when the trainer config is a ``*_official.yaml``
  (``PRESET=official`` in scripts/guidg/), else ``ours``;
- the averaging of ``TRAINER.<NAME>`` (the node of ``TRAINER.NAME``): ``BMA
  beta B`` for the clipood baseline, ``WiSE-FT alpha A`` (``, reset each
  epoch`` with ``WISE_RESET``) for erm / ueo, and the UEO weight for ueo.
"""
import os
import re

#: step-2 trainers: their config node and, where fixed, their baseline
DG_TRAINERS = {"GuiDG": ("GUIDG", None), "CLIPood": ("CLIPOOD", "clipood"),
               "ERMWiSEFT": ("ERMWISEFT", "erm"), "UEOWiSEFT": ("UEOWISEFT", "ueo")}
DUMP_LINE_RE = re.compile(r"^( *)([A-Z][A-Z0-9_]*):(?: (.*))?$")
CONFIG_FILE_RE = re.compile(r"^config_file: (.*)$")


def read_config(log_path):
    """``(config file, {"A.B.C": "value as printed"})`` from a log's argument
    and config dumps; ``(None, {})`` for a log without them."""
    config_file, flat, path, in_dump = None, {}, [], False
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            match = CONFIG_FILE_RE.match(line)
            if match and config_file is None:
                config_file = match.group(1).strip()
            if line == "** Config **":
                in_dump, path = True, []
                continue
            if not in_dump or set(line) == {"*"}:
                continue
            match = DUMP_LINE_RE.match(line)
            if not match:
                if flat:
                    break  # the end of the dump
                continue
            depth = len(match.group(1)) // 2
            path = path[:depth] + [match.group(2)]
            if match.group(3) is not None:
                flat[".".join(path)] = match.group(3).strip()
    return config_file, flat


def preset_of(config_file):
    """``official`` for a ``*_official.yaml`` trainer config, else ``ours``."""
    name = os.path.basename(config_file or "")
    return "official" if name.endswith("_official.yaml") else "ours"


def averaging_of(config):
    """The step-2 averaging of a flat config, or None for other trainers."""
    trainer = config.get("TRAINER.NAME")
    if trainer not in DG_TRAINERS:
        return None
    node, baseline = DG_TRAINERS[trainer]

    def value(key):
        return config.get("TRAINER.{}.{}".format(node, key), "?")

    baseline = baseline or value("BASELINE")
    if baseline == "clipood":
        return "BMA beta {}".format(value("BMA_BETA"))
    text = "WiSE-FT alpha {}".format(value("WISE_ALPHA"))
    if value("WISE_RESET") == "True":
        text += ", reset each epoch"
    if baseline == "ueo":
        text += ", UEO weight {}".format(value("UEO_WEIGHT"))
    return text


def backbone_of(log_path):
    """The run's ``MODEL.BACKBONE.NAME`` from its log's config dump (quotes
    removed), or None for a log without one."""
    if not log_path or not os.path.isfile(log_path):
        return None
    name = read_config(log_path)[1].get("MODEL.BACKBONE.NAME")
    return name.strip("'\"") if name else None


def describe_run(log_path):
    """``"preset P[, averaging]"`` of a run's log, or None without a config dump."""
    config_file, config = read_config(log_path)
    if not config:
        return None
    parts = ["preset " + preset_of(config_file)]
    averaging = averaging_of(config)
    if averaging:
        parts.append(averaging)
    return ", ".join(parts)
