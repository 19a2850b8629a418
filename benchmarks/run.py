"""``python -m benchmarks.run``: train-step time, eval images/s and peak
memory of each trainer, with ratios against baselines in the same process.

Examples::

    python -m benchmarks.run                                  # CPU, small random CLIP
    python -m benchmarks.run --trainers IVLP PromptSRC DiSa --steps 10
    python -m benchmarks.run --device cuda --backbone ViT-B/16 --prec amp --out results.md
"""
import argparse
import dataclasses
import json
import os
import sys

from clipwb.errors import UserInputError

from .backbones import BACKBONES, describe_backbone
from .configs import DEFAULT_TRAINERS, TRAINER_CONFIGS
from .harness import BenchSettings, run_benchmarks
from .measure import add_measure_args, device_name
from .report import render, render_markdown


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbone", default=None,
                   help="{} or a CLIP checkpoint path (default: small on the CPU, ViT-B/16 "
                        "on CUDA; named ones are random weights)".format(
                            " | ".join(BACKBONES)))
    p.add_argument("--prec", default=None, choices=["fp32", "fp16", "amp", "bf16"],
                   help="override every trainer's PREC (default: its config's)")
    p.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS),
                   metavar="NAME", help="any of: " + ", ".join(TRAINER_CONFIGS))
    add_measure_args(p, steps=7, eval_batches=5)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on the CPU: stable on a shared machine)")
    p.add_argument("--workdir", default=None,
                   help="folder for the backbone file and synthetic data (default: temporary)")
    p.add_argument("--out", default=None, help="also write the table as Markdown here")
    p.add_argument("--json", default=None,
                   help="also write the settings and measurements as JSON here")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides for every trainer (TRAINER.<NODE>.* keys only "
                        "reach that trainer), e.g. TRAINER.ISP.SELF_STRUCT False")
    p.add_argument("--verbose", action="store_true", help="show the trainers' build logs")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    backbone = args.backbone or ("ViT-B/16" if args.device == "cuda" else "small")
    settings = BenchSettings(device=args.device, backbone=backbone, prec=args.prec,
                             steps=args.steps, warmup=args.warmup,
                             eval_batches=args.eval_batches, n_classes=args.classes,
                             test_batch=args.test_batch, threads=args.threads,
                             workdir=args.workdir, opts=tuple(args.opts),
                             verbose=args.verbose)
    try:
        resolved, results = run_benchmarks(settings, args.trainers,
                                           log=lambda m: print(m, file=sys.stderr))
    except UserInputError as err:
        print("Error: {}".format(err), file=sys.stderr)
        return 2
    print(render(resolved, results, describe_backbone))
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        with open(args.out, "w") as f:
            f.write(render_markdown(resolved, results, describe_backbone))
        print("Markdown table written to {}".format(args.out))
    if args.json:
        write_json(args.json, resolved, results)
        print("Measurements written to {}".format(args.json))
    return 0


def write_json(path, settings, results):
    """``{"device": name, "settings": {...}, "results": [{...}, ...]}`` (seconds,
    images/s, MiB as in :class:`benchmarks.harness.TrainerResult`)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump({"device": device_name(settings.device),
                   "settings": dataclasses.asdict(settings),
                   "results": [dataclasses.asdict(r) for r in results]}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
