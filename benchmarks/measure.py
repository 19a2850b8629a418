"""Timers and peak-memory probes (CUDA: allocator peak; CPU: RSS growth)."""
import contextlib
import ctypes
import gc
import os
import platform
import re
import resource
import statistics
import time

import torch


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """Seconds one call of ``fn()`` takes (CUDA work waited for)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_time(fn, device, repeats, warmup=1):
    """Median seconds of ``repeats`` calls of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device) for _ in range(max(1, repeats)))


# -- memory -------------------------------------------------------------------
_STATUS = "/proc/self/status"


def _status_kib(field):
    with open(_STATUS) as f:
        match = re.search(r"^{}:\s+(\d+) kB".format(field), f.read(), re.M)
    return int(match.group(1)) if match else None


def _release_free_heap():
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that
    the next phase's RSS growth counts its own allocations."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_kind(device):
    """What :class:`PeakMemory` reports on ``device`` (a column label)."""
    if torch.device(device).type == "cuda":
        return "CUDA max allocated"
    return "CPU peak RSS growth"


class PeakMemory(contextlib.AbstractContextManager):
    """Peak memory (MiB) while the context runs, in ``self.mib``.

    CUDA: ``torch.cuda.max_memory_allocated`` (absolute, weights included).
    CPU: growth of the process's peak resident set over its size at entry,
    after freed heap is returned to the OS (``VmHWM`` reset through ``/proc/self/clear_refs``; elsewhere the
    ``ru_maxrss`` high-water mark, which cannot be reset, so the growth can
    read 0 when an earlier phase used more). Indicative: freed memory the
    allocator keeps is not returned, other processes are not counted.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.mib = None

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            _release_free_heap()
            self._proc = os.path.exists(_STATUS) and _reset_peak_rss()
            self._start = (_status_kib("VmRSS") if self._proc
                           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        else:
            peak = (_status_kib("VmHWM") if self._proc
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            self.mib = max(0, peak - self._start) / 1024
        return False


# -- the machine ----------------------------------------------------------------
def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device):
    """E.g. ``NVIDIA H100 80GB HBM3`` or ``AMD EPYC (2 cores)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "{} ({} cores)".format(cpu_name(), os.cpu_count())


def add_measure_args(p, steps, eval_batches):
    """The measurement flags of benchmarks.run and the GPU check (benchmarks/gpu_check.py)."""
    p.add_argument("--steps", type=int, default=steps, help="timed train steps per trainer")
    p.add_argument("--warmup", type=int, default=2, help="untimed train steps first")
    p.add_argument("--eval-batches", type=int, default=eval_batches, help="timed test batches")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes of the synthetic data (default 50 on CPU, 100 on "
                        "CUDA)")
    p.add_argument("--test-batch", type=int, default=None,
                   help="test batch size (default 32 on CPU, 100 on CUDA)")
