"""Train or evaluate a prompt-learning trainer (CoOp-family command line).

Same flags as CoOp / MaPLe / PromptSRC's ``train.py``::

    python train.py --root DATA --seed 1 --trainer PromptSRC \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base
"""
import argparse
import sys

import torch

try:
    import clipwb.datasets
    import clipwb.trainers
except ImportError as _err:  # a clone run before its one install command
    sys.exit("Error: {} -- install the project first: pip install -e .".format(_err))
from clipwb import registration, runlog
from clipwb.engine import (BACKEND, DATASET_REGISTRY, TRAINER_REGISTRY, build_trainer,
                           collect_env_info, distributed, get_cfg_default, set_random_seed,
                           setup_logger)
from clipwb.error_exit import fail, user_error_message
from clipwb.errors import (ConfigError, UserInputError, check_config_file,
                                  friendly_errors)


def register_everything():
    """Register every trainer and dataset of the project; with real Dassl, also
    its clearer image-read errors (:func:`clipwb.engine.compat.apply_usability`)."""
    registration.register_all()
    if BACKEND == "dassl":
        from clipwb.engine import compat

        compat.apply_usability()


register_everything()


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print("{}: {}".format(key, getattr(args, key)))
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args):
    """Copy the command-line flags into the config (CoOp's ``reset_cfg``)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg):
    """Add the keys the CoOp family adds to Dassl's defaults.

    ``DATASET.SUBSAMPLE_CLASSES`` comes from ``clipwb.datasets``; every
    trainer's ``TRAINER.<NAME>.*`` keys come from its own module through
    ``clipwb.trainers``.
    """
    clipwb.datasets.extend_cfg(cfg)
    clipwb.trainers.extend_cfg(cfg)


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    # 1. the dataset config file, 2. the method config file
    for flag, path in (("--dataset-config-file", args.dataset_config_file),
                       ("--config-file", args.config_file)):
        if path:
            check_config_file(flag, path)
            with friendly_errors(path, cfg):
                cfg.merge_from_file(path)
    # 3. the command-line flags, 4. the trailing KEY VALUE pairs
    reset_cfg(cfg, args)
    with friendly_errors("the command-line options", cfg):
        cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def check_names(cfg):
    """Fail before anything is written when the trainer or dataset is unknown."""
    for what, key, value, registry, hint in (
        ("trainer", "--trainer / TRAINER.NAME", cfg.TRAINER.NAME, TRAINER_REGISTRY,
         "pass --trainer NAME"),
        ("dataset", "DATASET.NAME", cfg.DATASET.NAME, DATASET_REGISTRY,
         "pass --dataset-config-file configs/datasets/<name>.yaml"),
    ):
        names = sorted(registry.registered_names())
        if value not in names:
            raise ConfigError("{} {!r} is not a registered {} ({}); available: {}".format(
                key, value, what, hint, ", ".join(names)))


def main(args):
    cfg = setup_cfg(args)
    check_names(cfg)
    # torchrun: one process per device; rank 0 alone prints and writes the log
    training = not args.eval_only and not args.no_train
    trainer_class = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    distributed.check_launch(trainer_class, BACKEND, training)
    batch = None  # (the global batch the ranks split)
    if training and distributed.is_distributed():
        batch, batch_key = distributed.global_batch(trainer_class, cfg)
        distributed.check_global_batch(batch, batch_key)
    distributed.silence_other_ranks()
    distributed.init(cfg.USE_CUDA)
    seed = distributed.shared_seed(cfg.SEED)  # (every rank draws the same batches)
    if seed >= 0:
        print("Setting fixed seed: {}".format(seed))
        set_random_seed(seed)
    if distributed.is_main():
        setup_logger(cfg.OUTPUT_DIR)
        runlog.line_buffered()

    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    # The config and environment dump and the model build go to log.txt; the
    # console gets a short header (all of it with --verbose).
    runlog.set_quiet(not args.verbose)
    with runlog.setup_output():
        print_args(args, cfg)
        print("Collecting env info ...")
        print("** System info **\n{}\n".format(collect_env_info()))
        trainer = build_trainer(cfg)
    log = runlog.log_file()
    for line in runlog.header_lines(cfg, trainer, BACKEND,
                                    [args.config_file, args.dataset_config_file],
                                    log.name if log is not None else None, args.eval_only):
        print(line)
    spread = distributed.describe(batch)
    if spread:
        print(spread)

    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        distributed.shutdown()
        return

    if not args.no_train:
        trainer.train()
    distributed.shutdown()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="",
                        help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1,
                        help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+",
                        help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+",
                        help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+",
                        help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="",
                        help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="",
                        help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int,
                        help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--verbose", action="store_true",
                        help="print the config, environment and model build to the console "
                             "too (they are always in log.txt)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser


if __name__ == "__main__":
    _args = build_parser().parse_args()
    try:
        main(_args)
    except UserInputError as err:
        # One clear sentence instead of a traceback for bad input; under torchrun
        # rank 0 says it (torchrun stops the other ranks when it exits), another
        # rank only when rank 0 did not stop it in a few seconds.
        distributed.let_main_report()
        fail("Error: {}".format(user_error_message(err)), 2)
    except KeyboardInterrupt:  # before training started (the trainer handles the rest)
        fail("Interrupted before training started; nothing was trained.", 130)
    except Exception as err:
        runlog.log_line("Error: {}: {}".format(type(err).__name__, err))
        raise
