"""Two parts of the GPU check (``benchmarks/gpu_check.py``), each a function
returning a JSON-able dict:

- :func:`measure_throughput`: evaluation images/s of ZeroshotCLIP (the plain
  image encoder, as CoOp evaluates it: fp16 weights on CUDA) at a few batch
  sizes, the multiply-adds per image and the device's dense matmul rate, so
  the report can set images/s against the FLOP bound;
- :func:`train_run`: one shipped config trained by the real ``train.py``
  (data loading, logging, checkpoints, the final test) for a few hundred
  steps on the synthetic dataset at the backbone's input size.
"""
import math
import os
import re
import statistics
import sys
import time

import torch

from clipwb.engine.progress import parse_progress
from clipwb.trainers.kit.clip_loader import load_clip
from clipwb.trainers.kit.prompted_clip import text_feature_cache

from . import synthetic
from .backbones import backbone_checkpoint
from .configs import CONFIG_DIR, config_from_file
from .flops import DTYPES, FLOPS_PER_MAC, matmul_flops_per_s, peak_dtypes, vit_image_macs
from .harness import BenchSettings, Workbench
from .measure import timed

#: shipped config of the training run (the project's main job: DiSa base-to-novel)
DEFAULT_TRAIN_CONFIG = "DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml"
ACCURACY_RE = re.compile(r"^\* accuracy: ([0-9.]+)%$", re.M)
TOTAL_RE = re.compile(r"^\* total: (\d+)$", re.M)
HEADER_PRECISION_RE = re.compile(r"^\s*engine: .*?, precision (\w+),", re.M)


def measure_throughput(device, backbone, batch_sizes, batches, n_classes, workdir,
                       peak_size=None, seed=0):
    """Images/s of ZeroshotCLIP's ``model_inference`` (text features cached,
    as in an evaluation) for each batch size, fastest and median of
    ``batches`` calls; the image encoder's multiply-adds per image; the
    matmul FLOP/s of each dtype of :func:`benchmarks.flops.peak_dtypes`.
    The backbone file is the one of ``workdir`` (written by the benchmark
    parts, else here); the data go to ``workdir/throughput``."""
    settings = BenchSettings(device=device, backbone=backbone_checkpoint(backbone, workdir),
                             n_classes=n_classes, test_batch=max(batch_sizes),
                             eval_batches=batches, workdir=os.path.join(workdir, "throughput"),
                             seed=seed)
    with Workbench(settings) as bench:
        macs = vit_image_macs(load_clip(bench.clip_path).visual)
        trainer = bench.build("ZeroshotCLIP")
        trainer.set_model_mode("eval")
        rows = []
        with torch.no_grad(), text_feature_cache(trainer.model):
            for size in batch_sizes:
                images = bench.random_batch(size, trainer.device, seed)["img"]
                trainer.model_inference(images)  # the text features, once
                trainer.model_inference(images)
                seconds = [timed(lambda: trainer.model_inference(images), trainer.device)
                           for _ in range(batches)]
                rows.append({"batch": size, "fastest_s": min(seconds),
                             "median_s": statistics.median(seconds),
                             "images_per_s": size / min(seconds),
                             "median_images_per_s": size / statistics.median(seconds)})
        precision = trainer.precision
        del trainer
    peaks = {name: matmul_flops_per_s(device, DTYPES[name], n=peak_size)
             for name in peak_dtypes(device)}
    return {"trainer": "ZeroshotCLIP", "precision": precision, "backbone": backbone,
            "macs_per_image": macs, "flops_per_image": None if macs is None
            else FLOPS_PER_MAC * macs, "matmul_flops_per_s": peaks,
            "matmul_size": peak_size or (8192 if device == "cuda" else 1024), "rows": rows}


def trainer_of(config):
    """The trainer of a config under configs/trainers/ (its folder's name)."""
    return os.path.basename(os.path.dirname(os.path.join(CONFIG_DIR, config)))


def train_run(device, backbone, config, steps, n_classes, workdir, workers=None, seed=1,
              print_freq=10):
    """Train ``config`` (relative to configs/trainers/) with ``train.py`` on the
    synthetic dataset of ``n_classes`` classes (one image per class and
    domain, at the backbone's input size) for about ``steps`` steps: whole
    epochs of the config's batch size, then the test. ``workers``: the data
    loader workers (None: the config's). The backbone file is the one of
    ``workdir``; the data and the run go to ``workdir/train``."""
    import train  # the repository's train.py (the check runs from the repository root)

    path = os.path.join(CONFIG_DIR, config)
    trainer = trainer_of(config)
    cfg = config_from_file(path, trainer)
    batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
    os.makedirs(workdir, exist_ok=True)
    clip_path = backbone_checkpoint(backbone, workdir)
    resolution = int(load_clip(clip_path).visual.input_resolution)
    images = n_classes * len(synthetic.DOMAINS)
    per_epoch = images // batch
    if per_epoch < 1:
        raise ValueError("--train-classes {}: {} images make no batch of {}; use more "
                         "classes.".format(n_classes, images, batch))
    epochs = max(1, math.ceil(steps / per_epoch))
    data_root = synthetic.write_synthetic_dataset(os.path.join(workdir, "train", "data"),
                                                  n_classes, resolution, seed=seed)
    out_dir = os.path.join(workdir, "train", "run")
    opts = ["DATASET.NAME", synthetic.DATASET_NAME, "MODEL.BACKBONE.NAME", clip_path,
            "INPUT.SIZE", "({0}, {0})".format(resolution), "OPTIM.MAX_EPOCH", str(epochs),
            "USE_CUDA", str(device == "cuda"), "TRAIN.PRINT_FREQ", str(print_freq)]
    if workers is not None:
        opts += ["DATALOADER.NUM_WORKERS", str(workers)]
    args = train.build_parser().parse_args(
        ["--root", data_root, "--seed", str(seed), "--trainer", trainer, "--config-file", path,
         "--output-dir", out_dir] + opts)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    console = sys.stdout
    start = time.perf_counter()
    try:
        train.main(args)
    finally:
        log = sys.stdout
        sys.stdout = console  # train.main tees the output into log.txt
        if log is not console and getattr(log, "file", None) is not None:
            log.file.close()
    wall = time.perf_counter() - start
    with open(os.path.join(out_dir, "log.txt")) as f:
        text = f.read()
    progress = parse_progress(text)
    epoch_losses = {}
    for line in progress:
        epoch_losses.setdefault(line.epoch, []).append(line.loss)
    last_epoch = [p for p in progress if p.epoch == epochs]
    header = HEADER_PRECISION_RE.search(text)
    accuracy, total = ACCURACY_RE.findall(text), TOTAL_RE.findall(text)
    return {
        "config": config, "trainer": trainer, "backbone": backbone, "device": device,
        "precision": header.group(1) if header else None, "batch": batch,
        "epochs": epochs, "batches_per_epoch": per_epoch, "steps": epochs * per_epoch,
        "classes": n_classes, "images": images, "resolution": resolution, "wall_s": wall,
        "step_s": last_epoch[-1].avg_batch_time if last_epoch else None,
        "logged_losses": len(progress),
        "losses_finite": bool(progress) and all(math.isfinite(p.loss) for p in progress),
        "first_epoch_loss": statistics.mean(epoch_losses[1]) if 1 in epoch_losses else None,
        "last_epoch_loss": (statistics.mean(epoch_losses[epochs]) if epochs in epoch_losses
                            else None),
        "test_accuracy": float(accuracy[-1]) if accuracy else None,
        "test_total": int(total[-1]) if total else None,
        "peak_mem_mib": (torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda"
                         else None),
        "log": os.path.join(out_dir, "log.txt"),
    }
