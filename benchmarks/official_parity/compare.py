"""Ours against an official trainer, iteration by iteration, on the toy world.

    python -m benchmarks.official_parity.compare --checkout PATH [--dassl PATH] \
        --trainer MaPLe [--prec fp32|fp16] [--seed 1] [--epochs N] [--work DIR] \
        [KEY VALUE ...]

Both sides train the trainer's toy config (``configs/trainers/<T>/toy.yaml``,
its ``toy_parity.yaml`` where it ships one, or ``--config``) on the base
classes of the toy world laid out as Caltech101 (:mod:`toy_caltech`), with
the toy CLIP file as ``MODEL.BACKBONE.NAME``, the
same seed, ``TRAIN.PRINT_FREQ 1`` and the extra ``KEY VALUE`` pairs; then
each tests its last epoch on the novel classes. ``--prec fp16`` runs both in
half precision on the CPU (``PREC_ON_CPU=1`` on our side; the official code
runs fp16 wherever it is asked to). Printed: for every logged iteration the
loss and learning rate of both sides, then the maximum difference of each
quantity and the base / novel accuracies (``--json FILE`` writes them).

The official side runs through :mod:`run_official` (outside patches only);
its Dassl needs scikit-learn and pandas importable.
"""
import argparse
import json
import os
import re
import subprocess
import sys

from benchmarks.official_parity import loss_recorder
from benchmarks.official_parity.record_draws import PREC_KEYS, TRAINER_OPTS, parity_config
from clipwb.trainers.kit.prompted_encoders import FULL_SEQUENCES_ENV
from benchmarks.official_parity.toy_caltech import write_toy_caltech

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_OFFICIAL = os.path.join(REPO, "benchmarks", "official_parity", "run_official.py")
TOY_CLIP = os.path.join(REPO, "clipwb", "toyworld", "toy_clip.pt")

#: Dassl's progress line; ``epoch [E/N][B/M]`` in older forks (KgCoOp's Dassl.ProGrad)
_LINE = re.compile(r"^epoch \[(\d+)/\d+\] ?(?:batch )?\[(\d+)/\d+\].*$", re.M)
_METER = re.compile(r"\b([a-z_]+) (-?[0-9.]+(?:e-?\d+)?|nan|inf) \(")
_LR = re.compile(r"\blr (\S+)")
_ACC = re.compile(r"^\* accuracy: ([0-9.]+)%", re.M)


def parse_iterations(text):
    """``[((epoch, batch), {meter: value, "lr": value})]`` from progress lines."""
    rows = []
    for match in _LINE.finditer(text):
        line = match.group(0)
        values = {name: float(value) for name, value in _METER.findall(line)
                  if name not in ("time", "data")}
        lr = _LR.search(line)
        if lr:
            values["lr"] = float(lr.group(1))
        rows.append(((int(match.group(1)), int(match.group(2))), values))
    return rows


_TIME = re.compile(r"\btime (\S+) \(")


def step_seconds(text, skip=2):
    """The mean of the logged per-iteration times after the first ``skip``
    (start-up) iterations, or None."""
    times = [float(m.group(1)) for m in
             (_TIME.search(line.group(0)) for line in _LINE.finditer(text)) if m]
    times = times[skip:]
    return sum(times) / len(times) if times else None


def last_accuracy(text):
    found = _ACC.findall(text)
    return float(found[-1]) if found else None


def _run(cmd, log, env):
    with open(log, "w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    with open(log) as f:
        text = f.read()
    if code != 0:
        raise SystemExit("error: {} failed (exit {}); its output is in {}:\n{}".format(
            " ".join(cmd[:4]), code, log, text[-2000:]))
    return text


def run_side(side, args, data, out, opts):
    """Train on base and test on novel; return (train log text, novel log text)."""
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    if side == "official":
        prefix = [sys.executable, RUN_OFFICIAL, "--checkout", args.checkout]
        if args.dassl:
            prefix += ["--dassl", args.dassl]
        prefix += ["--"]
        dataset_cfg = "configs/datasets/caltech101.yaml"
    else:
        prefix = [sys.executable, os.path.join(REPO, "benchmarks", "official_parity",
                                               "run_ours.py")]
        dataset_cfg = os.path.join(REPO, "configs", "datasets", "caltech101.yaml")
        env["DASSL_BACKEND"] = env.get("DASSL_BACKEND", "builtin")
        if args.full_sequences:
            env[FULL_SEQUENCES_ENV] = "1"
        if args.prec != "fp32":
            env["PREC_ON_CPU"] = "1"
    common = ["--root", data, "--seed", str(args.seed), "--trainer", args.trainer,
              "--dataset-config-file", dataset_cfg, "--config-file", args.config]
    train_dir = os.path.join(out, side, "train_base")
    test_dir = os.path.join(out, side, "test_new")
    env[loss_recorder.ENV] = os.path.join(out, side + "_losses.jsonl")
    train = _run(prefix + common + ["--output-dir", train_dir] + opts
                 + ["DATASET.SUBSAMPLE_CLASSES", "base"],
                 os.path.join(out, side + "_train.txt"), env)
    env.pop(loss_recorder.ENV)
    if args.train_only:
        return train, ""
    test = _run(prefix + common + ["--output-dir", test_dir, "--model-dir", train_dir,
                                   "--load-epoch", str(args.epochs), "--eval-only"] + opts
                + ["DATASET.SUBSAMPLE_CLASSES", "new"],
                os.path.join(out, side + "_test.txt"), env)
    return train, test


def compare(official, ours):
    """Per-quantity maximum absolute differences over the common iterations."""
    theirs = dict(official)
    diffs, first = {}, {}
    for key, values in ours:
        if key not in theirs:
            continue
        for name, value in values.items():
            if name not in theirs[key]:
                continue
            gap = abs(value - theirs[key][name])
            if gap > diffs.get(name, -1.0):
                diffs[name] = gap
            if gap > 0 and name not in first:
                first[name] = key
    return diffs, first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", required=True, help="the official repository's folder")
    parser.add_argument("--dassl", default="", help="Dassl.pytorch's source folder")
    parser.add_argument("--trainer", required=True, choices=sorted(PREC_KEYS))
    parser.add_argument("--prec", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--config", default="", help="trainer YAML (default: its toy.yaml)")
    parser.add_argument("--work", default="official_parity_runs", help="output folder")
    parser.add_argument("--json", default="", help="write the differences to this file")
    parser.add_argument("--clip", default="",
                        help="a backbone of benchmarks/backbones.py (random weights at "
                             "OpenAI's size, e.g. ViT-B/16) or a CLIP file, instead of the toy "
                             "CLIP (give INPUT.SIZE to match it); the report then compares "
                             "the step times too")
    parser.add_argument("--train-only", action="store_true",
                        help="train only (TEST.NO_TEST True, no novel test): for timing "
                             "the steps at full size")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP / MKL threads of both sides (0: the machine's default)")
    parser.add_argument("--shortcuts", dest="full_sequences", action="store_false",
                        help="keep our encoders' shortcuts (text cut after EOT, last block "
                             "for the pooled token only); by default they are off "
                             "(CLIPWB_FULL_SEQUENCES=1), so the forward passes are the "
                             "official ones bit for bit")
    parser.add_argument("opts", nargs="*", help="extra KEY VALUE pairs for both sides")
    args = parser.parse_args(argv)
    args.checkout = os.path.abspath(args.checkout)
    args.config = os.path.abspath(args.config or parity_config(args.trainer))
    work = os.path.abspath(args.work)
    out = os.path.join(work, "{}_{}_seed{}".format(args.trainer, args.prec, args.seed))
    if os.path.exists(out):
        raise SystemExit("error: {} exists; give another --work folder or remove it (runs "
                         "are never overwritten).".format(out))
    clip = TOY_CLIP
    if args.clip:
        from benchmarks.backbones import backbone_checkpoint

        os.makedirs(work, exist_ok=True)
        clip = backbone_checkpoint(args.clip, work, half=True)
    opts = ["DATASET.NUM_SHOTS", str(args.shots), "MODEL.BACKBONE.NAME", clip,
            "TRAIN.PRINT_FREQ", "1", "OPTIM.MAX_EPOCH", str(args.epochs),
            "TRAINER.{}.PREC".format(PREC_KEYS[args.trainer]), args.prec,
            *TRAINER_OPTS.get(args.trainer, [])] + list(args.opts)
    if args.train_only:
        opts += ["TEST.NO_TEST", "True"]
    os.makedirs(out)
    logs = {}
    for side in ("official", "ours"):
        data = write_toy_caltech(os.path.join(work, "data_" + side),
                                 toy_root=os.path.join(work, "toy_world"))
        logs[side] = run_side(side, args, data, out, opts)
    iterations = {side: parse_iterations(logs[side][0]) for side in logs}
    theirs = dict(iterations["official"])
    print("{:>9} {:>10} {:>10} {:>10} {:>10}".format("iteration", "official", "ours",
                                                     "lr off.", "lr ours"))
    for key, values in iterations["ours"]:
        other = theirs.get(key, {})
        print("{:>9} {:>10} {:>10} {:>10} {:>10}".format(
            "{}/{}".format(*key), other.get("loss", "-"), values.get("loss", "-"),
            other.get("lr", "-"), values.get("lr", "-")))
    diffs, first = compare(iterations["official"], iterations["ours"])
    exact = [loss_recorder.read(os.path.join(out, side + "_losses.jsonl"))
             for side in ("official", "ours")]
    exact_diffs = {}
    for theirs_step, ours_step in zip(*exact):
        for name in set(theirs_step) & set(ours_step):
            gap = abs(theirs_step[name] - ours_step[name])
            exact_diffs[name] = max(exact_diffs.get(name, 0.0), gap)
    report = {
        "trainer": args.trainer, "prec": args.prec, "seed": args.seed,
        "full_sequences": args.full_sequences,
        "iterations": [len(iterations["official"]), len(iterations["ours"])],
        "max_abs_diff": diffs, "first_difference": {k: list(v) for k, v in first.items()},
        "max_abs_diff_full_precision": exact_diffs,
        "full_precision_steps": [len(exact[0]), len(exact[1])],
        "step_seconds": {s: step_seconds(logs[s][0]) for s in logs},
        "base_accuracy": {s: last_accuracy(logs[s][0]) for s in logs},
        "novel_accuracy": {s: last_accuracy(logs[s][1]) for s in logs},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
