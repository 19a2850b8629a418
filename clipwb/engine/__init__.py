"""The Dassl facade: every Dassl name the project uses, from one backend.

The backend is chosen once, at import, by the ``DASSL_BACKEND`` environment
variable:

- ``auto`` (default): real Dassl (``import dassl``) if it imports, else the
  built-in engine (``clipwb.engine.builtin``);
- ``dassl``: real Dassl, or a clear error saying how to install it;
- ``builtin``: the built-in engine even when Dassl is installed.

``clipwb.engine.BACKEND`` is ``"dassl"`` or ``"builtin"``. With real Dassl the
patches of :mod:`clipwb.engine.compat` (torch 2.x / numpy 2 fixes) are applied
first. A Dassl-shaped package that only re-exports the built-in engine (it
sets ``CLIPWB_BUILTIN_VIEW``; the tests' fixture checkouts use one) counts as
the built-in engine.
"""
import importlib
import os

from clipwb.errors import ConfigError, UserInputError

__all__ = [
    "BACKEND",
    # config
    "get_cfg_default", "clean_cfg", "CfgNode",
    # registries
    "Registry", "TRAINER_REGISTRY", "build_trainer", "DATASET_REGISTRY",
    "build_dataset", "EVALUATOR_REGISTRY", "build_evaluator",
    # trainers
    "TrainerBase", "SimpleTrainer", "TrainerX", "SimpleNet",
    # data
    "Datum", "DatasetBase", "DataManager", "DatasetWrapper",
    "build_data_loader", "build_sampler", "build_transform",
    "INTERPOLATION_MODES",
    # optim
    "build_optimizer", "build_lr_scheduler",
    # evaluation
    "EvaluatorBase", "Classification", "compute_accuracy",
    # utils
    "setup_logger", "set_random_seed", "collect_env_info", "mkdir_if_missing",
    "read_json", "write_json", "listdir_nohidden", "read_image",
    "check_isfile", "load_pretrained_weights", "load_checkpoint",
    "save_checkpoint", "resume_from_checkpoint", "count_num_param",
    "AverageMeter", "MetricMeter",
]

_INSTALL_HINT = (
    "Install Dassl.pytorch from source: git clone "
    "https://github.com/KaiyangZhou/Dassl.pytorch && pip install "
    "--no-build-isolation -e Dassl.pytorch (its import also needs 'wilds'), "
    "or unset DASSL_BACKEND to use the built-in engine.")

# Where each name lives in real Dassl 0.6.3.
_DASSL_SOURCES = {
    "dassl.config": ["get_cfg_default", "clean_cfg"],
    "yacs.config": ["CfgNode"],
    "dassl.utils": [
        "Registry", "setup_logger", "set_random_seed", "collect_env_info",
        "mkdir_if_missing", "read_json", "write_json", "listdir_nohidden",
        "read_image", "check_isfile", "load_pretrained_weights",
        "load_checkpoint", "save_checkpoint", "resume_from_checkpoint",
        "count_num_param", "AverageMeter", "MetricMeter"],
    "dassl.engine": ["TRAINER_REGISTRY", "build_trainer", "TrainerBase",
                     "SimpleTrainer", "TrainerX", "SimpleNet"],
    "dassl.data": ["DataManager", "DatasetWrapper"],
    "dassl.data.datasets": ["DATASET_REGISTRY", "build_dataset", "Datum",
                            "DatasetBase"],
    "dassl.data.data_manager": ["build_data_loader"],
    "dassl.data.samplers": ["build_sampler"],
    "dassl.data.transforms": ["build_transform", "INTERPOLATION_MODES"],
    "dassl.optim": ["build_optimizer", "build_lr_scheduler"],
    "dassl.evaluation": ["EVALUATOR_REGISTRY", "build_evaluator",
                         "EvaluatorBase", "Classification"],
    "dassl.metrics": ["compute_accuracy"],
}


def _import_dassl():
    """``import dassl``; None when it fails."""
    try:
        import dassl
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return dassl


def _is_builtin_view(dassl):
    """A Dassl-shaped package that only re-exports this built-in engine (the
    tests' stand-in for Dassl sets ``CLIPWB_BUILTIN_VIEW``) is the built-in
    engine: the same registries and classes."""
    return bool(getattr(dassl, "CLIPWB_BUILTIN_VIEW", False))


def _choose_backend():
    choice = os.environ.get("DASSL_BACKEND", "auto").strip().lower() or "auto"
    if choice not in ("auto", "dassl", "builtin"):
        raise ConfigError(
            "DASSL_BACKEND={!r} is not valid; use auto, dassl or builtin".format(
                choice))
    if choice == "builtin":
        return "builtin"
    if choice == "dassl":
        try:
            import dassl
        except Exception as err:  # noqa: BLE001
            raise UserInputError(
                "DASSL_BACKEND=dassl but 'import dassl' fails ({}: {}). {}".format(
                    type(err).__name__, err, _INSTALL_HINT)) from None
        return "builtin" if _is_builtin_view(dassl) else "dassl"
    dassl = _import_dassl()
    return "dassl" if dassl is not None and not _is_builtin_view(dassl) else "builtin"


def _load_dassl_names():
    from clipwb.engine import compat

    compat.apply()
    names = {}
    for module_name, attrs in _DASSL_SOURCES.items():
        module = importlib.import_module(module_name)
        for attr in attrs:
            names[attr] = getattr(module, attr)
    return names


def _load_builtin_names():
    from clipwb.engine import builtin

    return {name: getattr(builtin, name) for name in __all__ if name != "BACKEND"}


BACKEND = _choose_backend()
globals().update(_load_dassl_names() if BACKEND == "dassl"
                 else _load_builtin_names())
