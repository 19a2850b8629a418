"""Variant run folders and the labels the results tables give runs.

``scripts/common.sh`` runs a job with extra ``KEY VALUE`` arguments (or with
``TAG=NAME``) in a folder of its own, one level below the config's, so that a
variant never lands in the default run's folder (which keeps its place)::

    base2new/PHASE/DATASET/shots_K/TRAINER/CFG[/VARIANT]/seedS
    dg/DATASET/shots_K/TRAINER/CFG[/VARIANT]/TARGET/seedS
    evaluation/TRAINER/CFG_Kshots[/VARIANT]/DATASET/seedS, DATASET/TRAINER/CFG_Kshots[/...][/VARIANT]/seedS

The last two layouts already take extra levels (they join the config name);
:func:`split_variant` finds the variant level of the first two, and
:func:`join` makes it part of the config name (``CFG/VARIANT``), so that a
variant is its own row of the tables.

:func:`cfg_label` is how a config name reads in a table: the configs of the
offline toy CLIP (``MODEL.BACKBONE.NAME ToyCLIP``: ``toy.yaml`` of every
method) are named after the toy world, so their runs on another dataset (your
own images with ``CFG=toy``) would read as the toy *dataset*; their label
says "toy CLIP backbone".
"""
import re

SHOTS_DIR_RE = re.compile(r"^shots_\d+$")

#: config names whose backbone is the offline toy CLIP
TOY_CLIP_CONFIGS = ("toy", "toy_official")


def _is_base2new(parts, at, phases):
    """``parts[at:]`` is ``PHASE/DATASET/shots_K/TRAINER/CFG/...``."""
    return len(parts) >= -at and parts[at] in phases and bool(SHOTS_DIR_RE.match(parts[at + 2]))


def _is_dg(parts, at):
    """``parts[at:]`` is ``dg/DATASET/shots_K/TRAINER/CFG/...``."""
    return len(parts) >= -at and parts[at] == "dg" and bool(SHOTS_DIR_RE.match(parts[at + 2]))


def split_variant(parts, phases):
    """``(parts, variant)``: the path parts of a run folder (ending in
    ``seedS``) without its variant level, and that level; ``(parts, None)``
    for a default run or another layout. ``phases``: the base-to-novel phase
    folders (``train_base``, ``test_new``, ...)."""
    parts = list(parts)
    if _is_base2new(parts, -7, phases) and not _is_base2new(parts, -6, phases):
        return parts[:-2] + parts[-1:], parts[-2]
    if _is_dg(parts, -8) and not _is_dg(parts, -7):
        return parts[:-3] + parts[-2:], parts[-3]
    return parts, None


def join(cfg, variant):
    """The config name of a run: ``CFG``, or ``CFG/VARIANT`` for a variant."""
    return cfg if not variant else "{}/{}".format(cfg, variant)


def cfg_label(cfg):
    """A config name as a table shows it: a toy-CLIP config (``toy``, and its
    variants ``toy/...``) reads "toy CLIP backbone (toy.yaml)", others as named."""
    head, sep, rest = cfg.partition("/")
    if head in TOY_CLIP_CONFIGS:
        head = "toy CLIP backbone ({}.yaml)".format(head)
    return head + sep + rest
