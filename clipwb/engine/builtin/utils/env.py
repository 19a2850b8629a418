"""Seeding and environment report (``set_random_seed``, ``collect_env_info``)."""
import random

import numpy as np
import torch

__all__ = ["set_random_seed", "collect_env_info"]


def set_random_seed(seed):
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info():
    """torch's environment report plus the Pillow version, as a string.

    Never raises: offline machines or missing tools give a shorter report.
    """
    try:
        from torch.utils.collect_env import get_pretty_env_info
        env_str = get_pretty_env_info()
    except Exception as err:  # noqa: BLE001 - a report must not crash training
        env_str = "PyTorch version: {} (full report unavailable: {})".format(
            torch.__version__, err)
    try:
        import PIL
        env_str += "\n        Pillow ({})".format(PIL.__version__)
    except ImportError:
        pass
    return env_str
