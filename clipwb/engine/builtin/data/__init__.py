"""Dassl's ``dassl.data`` subset: Datum, DatasetBase, loaders, samplers, transforms."""
from .dataset_base import DATASET_REGISTRY, DatasetBase, build_dataset
from .datum import Datum
from .manager import DataManager, build_data_loader
from .samplers import (RandomClassSampler, RandomDomainSampler, RandomSampler,
                       SeqDomainSampler, SequentialSampler, build_sampler)
from .transforms import INTERPOLATION_MODES, build_transform
from .wrapper import DatasetWrapper

__all__ = [
    "DATASET_REGISTRY", "DatasetBase", "build_dataset", "Datum", "DataManager",
    "build_data_loader", "RandomClassSampler", "RandomDomainSampler",
    "RandomSampler", "SeqDomainSampler", "SequentialSampler", "build_sampler",
    "INTERPOLATION_MODES", "build_transform", "DatasetWrapper",
]
