"""Dassl's ``dassl.utils`` subset: files, logging, seeding, checkpoints, meters."""
from .env import collect_env_info, set_random_seed
from .io import (check_isfile, listdir_nohidden, mkdir_if_missing, read_image,
                 read_json, tolist_if_not, write_json)
from .logger import Logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .torchtools import (count_num_param, is_trainer_checkpoint, load_checkpoint,
                         load_pretrained_weights, open_all_layers,
                         open_specified_layers, resume_from_checkpoint,
                         save_checkpoint)
from ..registry import Registry, check_availability

__all__ = [
    "collect_env_info", "set_random_seed", "check_isfile", "listdir_nohidden",
    "mkdir_if_missing", "read_image", "read_json", "tolist_if_not",
    "write_json", "Logger", "setup_logger", "AverageMeter", "MetricMeter",
    "count_num_param", "is_trainer_checkpoint", "load_checkpoint",
    "load_pretrained_weights", "open_all_layers", "open_specified_layers",
    "resume_from_checkpoint", "save_checkpoint", "Registry",
    "check_availability",
]
