"""The built-in engine: a clean re-implementation of the Dassl 0.6.3 API subset
the CoOp family uses (same names, signatures, defaults, files and log lines)."""
from .config import CfgNode, clean_cfg, get_cfg_default
from .data import (DATASET_REGISTRY, INTERPOLATION_MODES, DataManager,
                   DatasetBase, DatasetWrapper, Datum, build_data_loader,
                   build_dataset, build_sampler, build_transform)
from .evaluation import (EVALUATOR_REGISTRY, Classification, EvaluatorBase,
                         build_evaluator, compute_accuracy)
from .lr_scheduler import build_lr_scheduler
from .optim import build_optimizer
from .registry import Registry
from .trainer import (TRAINER_REGISTRY, SimpleNet, SimpleTrainer, TrainerBase,
                      TrainerX, TrainerXU, build_trainer)
from .utils import (AverageMeter, MetricMeter, check_isfile, collect_env_info,
                    count_num_param, listdir_nohidden, load_checkpoint,
                    load_pretrained_weights, mkdir_if_missing, read_image,
                    read_json, resume_from_checkpoint, save_checkpoint,
                    set_random_seed, setup_logger, write_json)

__all__ = [
    "CfgNode", "clean_cfg", "get_cfg_default",
    "Registry", "TRAINER_REGISTRY", "build_trainer", "DATASET_REGISTRY",
    "build_dataset", "EVALUATOR_REGISTRY", "build_evaluator",
    "TrainerBase", "SimpleTrainer", "TrainerX", "TrainerXU", "SimpleNet",
    "Datum", "DatasetBase", "DataManager", "DatasetWrapper", "build_data_loader",
    "build_sampler", "build_transform", "INTERPOLATION_MODES",
    "build_optimizer", "build_lr_scheduler",
    "EvaluatorBase", "Classification", "compute_accuracy",
    "setup_logger", "set_random_seed", "collect_env_info", "mkdir_if_missing",
    "read_json", "write_json", "listdir_nohidden", "read_image", "check_isfile",
    "load_pretrained_weights", "load_checkpoint", "save_checkpoint",
    "resume_from_checkpoint", "count_num_param", "AverageMeter", "MetricMeter",
]
