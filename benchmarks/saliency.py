"""``python -m benchmarks.saliency``: which patches each DiSa saliency source
keeps, measured against the toy world's ground-truth shape masks.

For the frozen toy CLIP (what DiSa's masking uses) and, with ``--model-dir``,
a trained DiSa model (the same formulas on its prompted image and text
encoders), every source of ``TRAINER.DISA.SALIENCY`` scores the patches of
the toy test images of each domain (rendered at ``--size``: the dataset's
images at 32 px, the same drawings at 64 px for a 64 px toy CLIP); the top
``round((1 - r) P)`` are kept at mask ratio ``r``. By default the images are
the dataset's test split (per class and domain, indices 20-39 of render
seed 0, the images the defaults were chosen on); ``--first-index`` and
``--render-seed`` draw others (indices ``first ... first + per-class - 1``
of that seed; any seed but 0 gives drawings that are in no split). Reported per source (``benchmarks.saliency_metrics``):
pointing-game accuracy, share of the shape's area kept, share of the
background kept, kept-patch IoU with the shape's patches; ``random`` (the
mean of ``--random-draws`` draws) is the floor and ``oracle`` (keep the
patches with the most shape) the ceiling. Examples::

    python -m benchmarks.saliency --root DATA
    python -m benchmarks.saliency --root DATA --render-seed 7 --first-index 0
    python -m benchmarks.saliency --root DATA --mask-ratio 0.3 \\
        --model-dir output/base2new/train_base/toy/shots_16/DiSa/toy/seed1 --load-epoch 10 \\
        --json saliency.json
"""
import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

import numpy as np
import torch
from tabulate import tabulate

from clipwb.errors import UserInputError
from clipwb.toyworld.render import DOMAINS, render, shape_mask
from clipwb.toyworld.train_clip import jpeg_roundtrip
from clipwb.toyworld.writer import DEFAULTS
from clipwb.trainers.disa.saliency import (SALIENCY_SOURCES, image_pass, keep_mask, pass_needs,
                                           saliency_scores, select_patches)

from .saliency_metrics import METRICS, ON_SHAPE, image_metrics, patch_areas, summarise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: index of the toy dataset's first test image per class and domain
TEST_FIRST = DEFAULTS["n_train"] + DEFAULTS["n_val"]
COLUMNS = {"pointing": "pointing", "shape_kept": "shape kept", "background_kept": "bg kept",
           "iou": "kept IoU"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.saliency",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.environ.get("DATA", "./data"),
                   help="DATA folder (the toy dataset is written there on first use)")
    p.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    p.add_argument("--mask-ratio", type=float, default=0.3, help="share of patches dropped")
    p.add_argument("--sources", nargs="+", default=list(SALIENCY_SOURCES),
                   choices=SALIENCY_SOURCES)
    p.add_argument("--model-dir", default="", help="a trained DiSa run folder (train_base)")
    p.add_argument("--load-epoch", type=int, default=None)
    p.add_argument("--classes", choices=("base", "all"), default="base",
                   help="base: the 13 classes DiSa trains (and masks) on; all: 25 (frozen only)")
    p.add_argument("--per-class", type=int, default=DEFAULTS["n_test"],
                   help="test images per class and domain")
    p.add_argument("--first-index", type=int, default=TEST_FIRST,
                   help="index of the first image drawn per class and domain (default {}: "
                        "the dataset's test split)".format(TEST_FIRST))
    p.add_argument("--render-seed", type=int, default=DEFAULTS["seed"],
                   help="the toy world's render seed (default {}: the dataset's images; "
                        "another seed draws images of no split)".format(DEFAULTS["seed"]))
    p.add_argument("--backbone", default="ToyCLIP", help="MODEL.BACKBONE.NAME")
    p.add_argument("--size", type=int, default=DEFAULTS["size"],
                   help="image side the toy images and masks are rendered at (the backbone's "
                        "input size: 32 for ToyCLIP; 64 for a toy CLIP trained with "
                        "`python -m clipwb.toyworld.train_clip --size 64`)")
    p.add_argument("--config-file", default=os.path.join(REPO, "configs/trainers/DiSa/toy.yaml"))
    p.add_argument("--on-shape", type=float, default=ON_SHAPE,
                   help="share of a patch the shape must cover to count as on the shape")
    p.add_argument("--random-draws", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default="", help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def build_trainer(args, workdir):
    """A DiSa trainer on the toy dataset (its frozen teacher, prompts and
    test transform), loaded from ``--model-dir`` when given."""
    sys.path.insert(0, REPO)
    import train  # noqa: E402  (registers the trainers and datasets)
    from clipwb.engine import build_trainer as build

    argv = ["--root", args.root, "--trainer", "DiSa", "--seed", str(args.seed),
            "--config-file", args.config_file, "--output-dir", workdir,
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/toy.yaml"),
            "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", args.classes,
            "MODEL.BACKBONE.NAME", args.backbone, "TRAINER.DISA.MASK_RATIO",
            str(args.mask_ratio), "INPUT.SIZE", "({0}, {0})".format(args.size)]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's build log
        trainer = build(cfg)
        if args.model_dir:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
    trainer.set_model_mode("eval")
    return trainer


def toy_batch(trainer, domain, per_class, size, first=TEST_FIRST, seed=DEFAULTS["seed"]):
    """Normalised images [N, 3, H, W], labels [N] and shape masks [N, H, W]
    of every class of the trainer in ``domain``: images ``first ... first +
    per_class - 1`` of render seed ``seed`` (by default the dataset's test
    split: the pixels of its JPEG files), through the test transform."""
    from clipwb.engine import build_transform

    with contextlib.redirect_stdout(io.StringIO()):  # its "Building transform_test" lines
        transform = build_transform(trainer.cfg, is_train=False)
    resolution = trainer.model.image_encoder.visual.input_resolution
    if resolution != size:
        raise UserInputError("--size {} differs from the backbone's input size {} px: pass "
                             "--size {} or a {} px toy CLIP as --backbone.".format(
                                 size, resolution, resolution, size))
    images, labels, masks = [], [], []
    for label in range(len(trainer.dm.dataset.classnames)):  # base labels = toy labels 0..12
        for k in range(per_class):
            args = (label, domain, first + k, seed, size)
            images.append(transform(jpeg_roundtrip(render(*args))))
            labels.append(label)
            masks.append(torch.from_numpy(shape_mask(*args)))
    return torch.stack(images), torch.tensor(labels), torch.stack(masks)


@torch.no_grad()
def measure(trainer, images, labels, masks, sources, ratio, prompted, args):
    """{source: {metric: (mean, half-width)}} for one model and domain."""
    model = trainer.model
    encoder = model.image_encoder
    if prompted:
        prompts = model.prompt_learner()
        text, shallow, deep = model.encode_prompts(prompts), prompts.vision, prompts.vision_deep
    else:
        text, shallow, deep = model.zero_shot.text_features, None, None
    patch = trainer.patch_size
    areas = patch_areas(masks, patch)
    results = {}
    for source in list(sources) + ["oracle"]:
        needs = pass_needs(source if source != "oracle" else None)
        frozen = image_pass(encoder, images, None, *needs, shallow_prompts=shallow,
                            deep_prompts=deep)
        draws = args.random_draws if source == "random" else 1
        generator = torch.Generator().manual_seed(args.seed)
        per_image = {key: 0.0 for key in METRICS}
        for _ in range(draws):
            if source == "oracle":
                scores = areas.float() + 1e-6 * torch.rand(areas.shape, generator=generator)
            else:
                scores = saliency_scores(source, encoder, frozen, text, labels, generator)
            kept = keep_mask(select_patches(scores, ratio), scores.shape[1])
            values = image_metrics(scores, kept, areas, patch, args.on_shape)
            per_image = {key: per_image[key] + values[key] / draws for key in METRICS}
        results[source] = summarise(per_image)
    return results


def run(args):
    if not 0 <= args.mask_ratio < 1:
        raise UserInputError("--mask-ratio {} must be a fraction in [0, 1).".format(
            args.mask_ratio))
    if args.model_dir and args.classes != "base":
        raise UserInputError("--classes all needs no --model-dir: a base-to-novel DiSa "
                             "model knows the base classes only.")
    if args.per_class < 1 or args.random_draws < 1:
        raise UserInputError("--per-class and --random-draws must be >= 1.")
    if args.first_index < 0 or args.render_seed < 0:
        raise UserInputError("--first-index {} and --render-seed {} must be >= 0.".format(
            args.first_index, args.render_seed))
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = build_trainer(args, workdir)
    models = [("frozen CLIP", False)] + ([("DiSa", True)] if args.model_dir else [])
    table = {}
    for domain in args.domains:
        images, labels, masks = toy_batch(trainer, domain, args.per_class, args.size,
                                          args.first_index, args.render_seed)
        for name, prompted in models:
            table.setdefault(name, {})[domain] = measure(
                trainer, images, labels, masks, args.sources, args.mask_ratio, prompted, args)
    return table


def mean_over_domains(per_domain):
    """{domain: {source: {metric: (m, h)}}} -> {source: {metric: mean of m}}."""
    domains = list(per_domain)
    sources = list(per_domain[domains[0]])
    return {s: {k: float(np.mean([per_domain[d][s][k][0] for d in domains])) for k in METRICS}
            for s in sources}


def images_line(args):
    """Which toy images were measured, in one line."""
    test_split = (args.first_index == TEST_FIRST and args.render_seed == DEFAULTS["seed"]
                  and args.per_class <= DEFAULTS["n_test"])
    return "Images: per class and domain, indices {}-{} of render seed {}{}.\n".format(
        args.first_index, args.first_index + args.per_class - 1, args.render_seed,
        " (the dataset's test split)" if test_split else "")


def render_tables(table, ratio):
    lines = []
    for model, per_domain in table.items():
        rows = []
        for domain, per_source in per_domain.items():
            for source, values in per_source.items():
                rows.append([domain, source] + ["{:.1f} ± {:.1f}".format(100 * m, 100 * h)
                                                 for m, h in (values[k] for k in METRICS)])
        lines.append("{}, mask ratio {} (mean ± 95 % half-width, %):".format(model, ratio))
        lines.append(tabulate(rows, headers=["domain", "source"] +
                              [COLUMNS[k] for k in METRICS], tablefmt="github"))
        means = mean_over_domains(per_domain)
        rows = [[s] + ["{:.1f}".format(100 * v[k]) for k in METRICS] for s, v in means.items()]
        lines.append("\n{}: mean over {} (%):".format(model, ", ".join(per_domain)))
        lines.append(tabulate(rows, headers=["source"] + [COLUMNS[k] for k in METRICS],
                              tablefmt="github"))
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    try:
        table = run(args)
    except UserInputError as err:
        print("error: {}".format(err), file=sys.stderr)
        return 2
    print(images_line(args))
    print(render_tables(table, args.mask_ratio))
    if args.json:
        payload = {"mask_ratio": args.mask_ratio, "on_shape": args.on_shape,
                   "per_class": args.per_class, "classes": args.classes,
                   "first_index": args.first_index, "render_seed": args.render_seed,
                   "model_dir": args.model_dir, "results": table,
                   "mean_over_domains": {m: mean_over_domains(d) for m, d in table.items()}}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
        print("Wrote {}".format(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
