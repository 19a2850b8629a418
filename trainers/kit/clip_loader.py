"""Load a frozen OpenAI CLIP (by model name or checkpoint path) for the trainers.

``MODEL.BACKBONE.NAME`` is either an OpenAI model name (``ViT-B/16``, ``RN50``,
...: downloaded by the ``clip`` package into ``~/.cache/clip``) or the path of
a checkpoint file: a TorchScript archive (OpenAI's ``.pt`` files) or a
``torch.save``'d state dict (bare, or wrapped as ``{"state_dict": ...}``).

``import clip`` may be OpenAI's package or, inside a MaPLe / PromptSRC
checkout, that checkout's fork, whose ``build_model(state_dict,
design_details)`` takes a second argument: :func:`build_model` passes the
fork :data:`NO_PROMPT_DESIGN`, which builds the stock blocks (the prompted
encoders add the prompts themselves and drive each block through its
submodules, never its ``forward``), so the features are stock CLIP's.
"""
import contextlib
import inspect
import os
import socket
import urllib.error
import warnings

import torch
from clip import clip as clip_api
from clip import model as clip_model_module

from clipwb.errors import ConfigError, MissingFileError, UserInputError

# The normalisation CLIP was trained with (configs' INPUT.PIXEL_MEAN / PIXEL_STD).
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)

# Input resolution of every OpenAI model (configs' INPUT.SIZE).
CLIP_INPUT_RESOLUTION = {
    "RN50": 224,
    "RN101": 224,
    "RN50x4": 288,
    "RN50x16": 384,
    "RN50x64": 448,
    "ViT-B/32": 224,
    "ViT-B/16": 224,
    "ViT-L/14": 224,
    "ViT-L/14@336px": 336,
}

DEFAULT_DOWNLOAD_ROOT = "~/.cache/clip"
#: MODEL.BACKBONE.NAME of the shipped offline toy CLIP (LOCAL_MODELS)
TOY_CLIP_NAME = "ToyCLIP"
# Seconds a download may wait for the network (per connect / read), so that an
# offline machine whose firewall drops packets fails soon instead of hanging.
DOWNLOAD_SOCKET_TIMEOUT = 30


def available_models():
    """OpenAI model names accepted as ``MODEL.BACKBONE.NAME``."""
    return list(clip_api.available_models()) + sorted(LOCAL_MODELS)


def expected_checkpoint_file(name, download_root=None):
    """Where the ``clip`` package keeps the file of model ``name`` (``~`` kept)."""
    filename = os.path.basename(clip_api._MODELS[name])
    root = download_root or DEFAULT_DOWNLOAD_ROOT
    return os.path.join(root, filename)


def _download(name, download_root):
    """Return the local file of OpenAI model ``name``, downloading it if needed."""
    shown = expected_checkpoint_file(name, download_root)
    root = os.path.expanduser(download_root or DEFAULT_DOWNLOAD_ROOT)
    previous_timeout = socket.getdefaulttimeout()
    if previous_timeout is None:
        socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
    try:
        return clip_api._download(clip_api._MODELS[name], root)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise MissingFileError(
            "Could not download CLIP model {!r} ({}). Its weights are expected at "
            "{}. Fix: place the OpenAI checkpoint file there (e.g. copy it from a "
            "machine with internet access), or pass the path of a checkpoint file "
            "as MODEL.BACKBONE.NAME; to run offline without one, use the shipped toy "
            "CLIP (CFG=toy for the scripts, e.g. CFG=toy bash "
            "scripts/disa/base2new.sh image_folder 1, or MODEL.BACKBONE.NAME {}: "
            "32 px, for checking a pipeline, not for real accuracy).".format(
                name, err, shown, TOY_CLIP_NAME)) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _read_checkpoint(path):
    """Return the state dict stored in ``path`` (TorchScript or torch.save)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load's deprecation note
            return torch.jit.load(path, map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        pass
    errors = []
    for weights_only in (True, False):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=weights_only)
            break
        except Exception as err:  # noqa: BLE001 - any unpickling failure
            errors.append(err)
    else:
        raise UserInputError(
            "MODEL.BACKBONE.NAME {}: the file is neither a TorchScript archive nor a "
            "torch.save'd CLIP state dict ({}). Check that the file is complete (not "
            "a truncated download) and is a CLIP checkpoint.".format(path, errors[-1]))
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj, path):
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise UserInputError(
            "MODEL.BACKBONE.NAME {}: expected a state dict, found a {}. Save the "
            "checkpoint with torch.save(clip_model.state_dict(), path).".format(
                path, type(obj).__name__))
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


# Entries of OpenAI's TorchScript state dicts that are not weights.
_BUILD_ONLY_KEYS = ("input_resolution", "context_length", "vocab_size")
_REQUIRED_KEYS = ("text_projection", "positional_embedding", "token_embedding.weight",
                  "ln_final.weight")


#: What a CoOp-family fork of ``clip.model.build_model`` needs to build plain
#: CLIP blocks (no prompts of its own): MaPLe's and PromptSRC's CoOp design.
NO_PROMPT_DESIGN = {"trainer": "CoOp", "vision_depth": 0, "language_depth": 0,
                    "vision_ctx": 0, "language_ctx": 0}


def build_model(state_dict):
    """``clip.model.build_model`` of whichever ``clip`` is imported: OpenAI's
    ``build_model(state_dict)`` or a fork's ``build_model(state_dict,
    design_details)`` (given :data:`NO_PROMPT_DESIGN`)."""
    build = clip_model_module.build_model
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        params = {}
    if "design_details" in params:
        return build(state_dict, design_details=dict(NO_PROMPT_DESIGN))
    return build(state_dict)


def build_clip_from_state_dict(state_dict, source="the state dict", draws=None):
    """Build a float32 ``clip.model.CLIP`` in eval mode from an OpenAI state dict
    (``draws``: a ``ConstructionDraws`` that draws prompts while it is built)."""
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if missing or not any(k.startswith("visual.") for k in state_dict):
        raise UserInputError(
            "MODEL.BACKBONE.NAME {}: this is not a CLIP checkpoint (missing keys: {}). "
            "Give an OpenAI CLIP model name or file.".format(
                source, ", ".join(missing or ["visual.*"])))
    try:
        with draws.recording() if draws is not None else contextlib.nullcontext():
            model = build_model(dict(state_dict))
        model = model.float()
        # build_model stores the weights in fp16; reload them so that float32
        # checkpoints keep their full precision (fp16 ones are upcast exactly).
        weights = {k: v for k, v in state_dict.items() if k not in _BUILD_ONLY_KEYS}
        model.load_state_dict(weights)
    except Exception as err:  # noqa: BLE001 - report which file is broken
        raise UserInputError(
            "MODEL.BACKBONE.NAME {}: could not build CLIP from it ({}: {}).".format(
                source, type(err).__name__, err)) from None
    return model.eval()


def _looks_like_path(name):
    if name.endswith((".pt", ".pth", ".bin", ".tar")) or name.startswith((".", "/", "~")):
        return True
    return os.sep in name and not name.startswith(("ViT-", "RN"))


def _toy_clip_path():
    from clipwb.toyworld import TOY_CLIP_PATH
    return TOY_CLIP_PATH


#: Named checkpoints shipped with the project (name -> function giving the path).
#: ``ToyCLIP``: a small CLIP trained on the toy world (clipwb/toyworld/README.md).
LOCAL_MODELS = {TOY_CLIP_NAME: _toy_clip_path}


def load_clip(name_or_path, device="cpu", download_root=None, draws=None):
    """Return a frozen float32 ``clip.model.CLIP`` (eval mode, no gradients).

    ``name_or_path``: an OpenAI model name (see :func:`available_models`) or the
    path of a TorchScript archive / ``torch.save``'d state dict. Named models
    are downloaded into ``download_root`` (default ``~/.cache/clip``).
    ``draws``: a :class:`~clipwb.trainers.kit.initial_draws.ConstructionDraws`
    that draws prompts while the model is built, as the official forks do.
    """
    name_or_path = str(name_or_path)
    if name_or_path in clip_api._MODELS:
        path = _download(name_or_path, download_root)
    elif name_or_path in LOCAL_MODELS:
        path = LOCAL_MODELS[name_or_path]()
    else:
        path = os.path.expanduser(name_or_path)
        if not os.path.isfile(path):
            if _looks_like_path(name_or_path):
                raise MissingFileError(
                    "MODEL.BACKBONE.NAME {}: no such checkpoint file. Give an existing "
                    "CLIP checkpoint path or one of the OpenAI names {}.".format(
                        name_or_path, available_models()))
            raise ConfigError(
                "MODEL.BACKBONE.NAME {!r} is not a CLIP model: use one of {} or the "
                "path of a checkpoint file.".format(name_or_path, available_models()))
    model = build_clip_from_state_dict(_read_checkpoint(path), source=path, draws=draws)
    for param in model.parameters():
        param.requires_grad_(False)
    return model.to(device)


def clip_input_resolution(clip_model):
    """Image side length (pixels) the CLIP image encoder expects."""
    return int(clip_model.visual.input_resolution)


def check_input_size(input_size, clip_model, key="INPUT.SIZE"):
    """Raise ConfigError unless ``input_size`` is CLIP's square input resolution."""
    res = clip_input_resolution(clip_model)
    size = tuple(int(s) for s in input_size)
    if size != (res, res):
        raise ConfigError(
            "{} is {} but this CLIP takes {}x{} images: set {} ({}, {}) in the "
            "dataset/trainer config or on the command line.".format(
                key, size, res, res, key, res, res))
    return res
