"""``bash benchmarks/gpu_check.sh``: the GPU check of a CUDA machine,
unattended, in under 8 minutes, written as one Markdown report.

Parts, in order, each a subprocess with its own time cap:

1. ``bench-fp16``, ``bench-amp``, ``bench-bf16``: ``python -m benchmarks.run
   --device cuda --backbone ViT-B/16 --prec P`` for every trainer the
   benchmarks know (``benchmarks/configs.py``);
2. ``throughput``: ViT-B/16 evaluation images/s (ZeroshotCLIP, fp16 weights)
   against the FLOP bound: 17.56 G multiply-adds per 224 px image over the
   device's measured dense matmul rate (``benchmarks/flops.py``), and every
   trainer's eval rate of the benchmarks above against the same bound;
3. ``train``: one shipped config (DiSa base-to-novel) trained by the real
   ``train.py`` for about 300 steps on the synthetic 224 px dataset, then tested.

The 8 minutes are planned, not measured (no GPU was available when this was
written): the caps of :data:`PLAN` add up to :data:`DEFAULT_BUDGET_S` (7.5
minutes), a part still running at its cap is stopped (its process group:
SIGTERM, then SIGKILL) and reported as such, and the next part starts, so the
run ends within the budget plus the start-up. The report is rewritten after
every part, so a run stopped from outside leaves what was measured.

Without CUDA the check refuses in one sentence; ``--device cpu`` runs the
same parts on the CPU (with ``--backbone tiny`` and small counts: a
functional check of the script, as tests/test_gpu_check.py does).
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import torch

# only torch before the CUDA check (clip's import warns about pkg_resources,
# which would bury the refusal); the rest is imported where it is used
from .flops import peak_dtype_of
from .measure import add_measure_args, cpu_name, device_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ("fp16", "amp", "bf16")
#: part -> planned seconds (its cap at the default budget); see the docstring
PLAN = {"bench-fp16": 100, "bench-amp": 100, "bench-bf16": 100, "throughput": 45,
        "train": 105}
DEFAULT_BUDGET_S = sum(PLAN.values())  # 450 s
#: seconds a stopped part gets between SIGTERM (a training run stops after
#: its step) and SIGKILL
STOP_GRACE_S = 5
NO_CUDA = ("Error: no CUDA GPU is visible to torch (torch.cuda.is_available() is False): run "
           "bash benchmarks/gpu_check.sh on a machine with an NVIDIA GPU and a CUDA build of "
           "torch, or pass --device cpu to run its parts on the CPU.")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bash benchmarks/gpu_check.sh",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--backbone", default="ViT-B/16",
                   help="a named random-weight backbone of benchmarks/backbones.py "
                        "(ViT-B/16, ViT-B/32, RN50, RN101, small, tiny) or a CLIP "
                        "checkpoint path")
    p.add_argument("--out", default=os.path.join("output", "gpu_check", "report.md"),
                   help="the Markdown report (the parts' logs go beside it)")
    p.add_argument("--workdir", default=None,
                   help="backbone file, synthetic data, runs (default: temporary, removed)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help="seconds for all parts; each part's cap is its share of PLAN")
    p.add_argument("--trainers", nargs="+", default=None, metavar="NAME",
                   help="benchmarked trainers (default: every one benchmarks/configs.py "
                        "knows)")
    add_measure_args(p, steps=5, eval_batches=4)
    p.add_argument("--throughput-batches", type=int, nargs="+", default=[100, 250])
    p.add_argument("--throughput-repeats", type=int, default=10)
    p.add_argument("--peak-size", type=int, default=None,
                   help="side of the matmul that measures the peak (8192 CUDA, 1024 CPU)")
    p.add_argument("--train-config", default="DiSa/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
                   help="config of the training run, under configs/trainers/")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--train-classes", type=int, default=100)
    p.add_argument("--train-workers", type=int, default=None,
                   help="data loader workers of the training run (default: the config's)")
    p.add_argument("--inline", action="store_true",
                   help="run the parts in this process, without caps (tests, debugging)")
    p.add_argument("--part", choices=["throughput", "train"], default=None,
                   help=argparse.SUPPRESS)  # one part, in a subprocess of the check
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


@dataclass
class PartResult:
    name: str
    status: str  # "ok", "failed (...)", "stopped at its N s cap", "not run (...)"
    wall_s: float
    cap_s: Optional[float]
    log: Optional[str]
    data: object = None  # what the part measured (JSON), or None

    @property
    def ok(self):
        return self.status == "ok"


# -- the parts' command lines -------------------------------------------------
def bench_argv(args, prec, workdir):
    argv = ["-m", "benchmarks.run", "--device", args.device, "--backbone", args.backbone,
            "--prec", prec, "--trainers"] + list(args.trainers) + [
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--eval-batches", str(args.eval_batches), "--workdir", workdir,
            "--out", os.path.join(workdir, "bench_{}.md".format(prec)),
            "--json", os.path.join(workdir, "bench_{}.json".format(prec))]
    if args.classes:
        argv += ["--classes", str(args.classes)]
    if args.test_batch:
        argv += ["--test-batch", str(args.test_batch)]
    return argv


def part_argv(args, part, workdir):
    argv = ["-m", "benchmarks.gpu_check", "--part", part, "--device", args.device,
            "--backbone", args.backbone, "--workdir", workdir,
            "--json", os.path.join(workdir, part + ".json"),
            "--throughput-batches"] + [str(b) for b in args.throughput_batches] + [
            "--throughput-repeats", str(args.throughput_repeats),
            "--train-config", args.train_config, "--train-steps", str(args.train_steps),
            "--train-classes", str(args.train_classes)]
    for flag, value in (("--classes", args.classes), ("--peak-size", args.peak_size),
                        ("--train-workers", args.train_workers)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def run_one_part(args):
    """``--part NAME``: run it here and write its JSON."""
    from . import gpu_parts

    if args.part == "throughput":
        data = gpu_parts.measure_throughput(
            args.device, args.backbone, args.throughput_batches, args.throughput_repeats,
            args.classes or (100 if args.device == "cuda" else 50), args.workdir,
            peak_size=args.peak_size)
        data["backbone"] = args.backbone
    else:
        data = gpu_parts.train_run(args.device, args.backbone, args.train_config,
                                   args.train_steps, args.train_classes, args.workdir,
                                   workers=args.train_workers)
    with open(args.json, "w") as f:
        json.dump(data, f, indent=1)
    return 0


# -- running them ---------------------------------------------------------------
def stop_group(proc, grace_s=None):
    """Stop a part and everything it started (data-loader workers too)."""
    grace_s = STOP_GRACE_S if grace_s is None else grace_s
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_subprocess(name, argv, cap_s, log_path):
    """Run ``python ARGV`` from the repository root for at most ``cap_s``."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable] + argv, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=cap_s)
            status = "ok" if code == 0 else "failed (exit {})".format(code)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            status = "stopped at its {:.0f} s cap".format(cap_s)
    return PartResult(name, status, time.monotonic() - start, cap_s, log_path)


def run_inline(name, argv):
    """Run a part's command line in this process (``--inline``)."""
    from . import run as bench_run

    start = time.monotonic()
    try:
        if argv[:2] == ["-m", "benchmarks.run"]:
            code = bench_run.main(argv[2:])
        else:
            code = run_one_part(parse_args(argv[2:]))
        status = "ok" if code == 0 else "failed (exit {})".format(code)
    except Exception as err:  # noqa: BLE001 - reported in the report, the next part runs
        status = "failed ({}: {})".format(type(err).__name__, err)
    return PartResult(name, status, time.monotonic() - start, None, None)


def read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def planned_caps(budget_s):
    """Each part's cap: its share of ``budget_s`` in the proportions of PLAN."""
    scale = budget_s / DEFAULT_BUDGET_S
    return {name: seconds * scale for name, seconds in PLAN.items()}


def run_check(args, log=print):
    """Run every part in order and write the report after each; returns the
    list of :class:`PartResult`."""
    out = os.path.abspath(args.out)
    logs = os.path.splitext(out)[0] + "_logs"
    os.makedirs(logs, exist_ok=True)
    tmp = None
    workdir = args.workdir
    if workdir is None:
        workdir = tmp = tempfile.mkdtemp(prefix="gpu_check_")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    plan = [("bench-" + prec, bench_argv(args, prec, workdir)) for prec in PRECISIONS]
    plan += [(part, part_argv(args, part, workdir)) for part in ("throughput", "train")]
    caps = planned_caps(args.budget_s)
    machine = machine_lines(args.device)
    for line in machine:
        log(line)
    start = time.monotonic()
    results = []
    try:
        for name, argv in plan:
            left = args.budget_s - (time.monotonic() - start)
            if not args.inline and left < 1:
                results.append(PartResult(name, "not run (no time left of the budget)", 0.0,
                                          0.0, None))
                continue
            log("gpu check: {} ...".format(name))
            if args.inline:
                result = run_inline(name, argv)
            else:
                result = run_subprocess(name, argv, min(caps[name], left),
                                        os.path.join(logs, name + ".log"))
            json_path = argv[argv.index("--json") + 1]
            result.data = read_json(json_path) if result.ok else None
            if name.startswith("bench-") and result.ok:
                with open(os.path.join(workdir, "bench_{}.md".format(name[6:]))) as f:
                    result.data = dict(result.data, markdown=f.read())
            results.append(result)
            log("gpu check: {} {} ({:.0f} s)".format(name, result.status, result.wall_s))
            write_report(out, args, machine, results, time.monotonic() - start)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


# -- the report -------------------------------------------------------------------
def machine_lines(device):
    lines = []
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        lines.append("GPU: {} ({:.1f} GiB, compute capability {}.{}, {} SMs), bf16 {}".format(
            props.name, props.total_memory / 2 ** 30, props.major, props.minor,
            props.multi_processor_count,
            "supported" if torch.cuda.is_bf16_supported() else "not supported"))
        lines.append("visible GPUs: {}; the check uses GPU 0".format(torch.cuda.device_count()))
        lines.append("torch {}, CUDA {}, cuDNN {}".format(
            torch.__version__, torch.version.cuda, torch.backends.cudnn.version()))
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                query = subprocess.run(
                    [smi, "--query-gpu=name,driver_version,memory.total,power.limit,"
                     "clocks.max.sm", "--format=csv,noheader"], capture_output=True,
                    text=True, timeout=20)
                if query.returncode == 0 and query.stdout.strip():
                    lines.append("nvidia-smi (name, driver, memory, power limit, max SM "
                                 "clock): " + query.stdout.strip().splitlines()[0])
            except (OSError, subprocess.TimeoutExpired):
                pass
    else:
        lines.append("no GPU: the CPU ({}); every PREC runs as fp32 there, so the three "
                     "benchmark tables measure the same thing".format(device_name("cpu")))
        lines.append("torch {}".format(torch.__version__))
    lines.append("CPU: {} ({} cores), Python {}".format(cpu_name(), os.cpu_count(),
                                                         platform.python_version()))
    return lines


def fmt(value, digits=1, scale=1.0):
    return "-" if value is None else "{:.{}f}".format(value * scale, digits)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def failure_lines(result, tail=25):
    lines = ["Not measured: the part {}.".format(result.status)]
    if result.log and os.path.isfile(result.log):
        with open(result.log, errors="replace") as f:
            last = f.read().splitlines()[-tail:]
        lines += ["", "Last lines of {}:".format(result.log), "", "```"] + last + ["```"]
    return lines


def bench_section(result):
    """The benchmarks' Markdown (header lines and table) without its title."""
    return [line for line in result.data["markdown"].splitlines() if not line.startswith("# ")]


def bound_of(peaks, prec, device, flops):
    peak = peaks.get(peak_dtype_of(prec, device))
    return None if not peak or not flops else peak / flops


def throughput_section(result, benches, device):
    d = result.data
    flops, peaks = d["flops_per_image"], d["matmul_flops_per_s"]
    lines = []
    if flops is None:
        lines.append("The backbone's image encoder is not a ViT: no FLOP count (the bound is "
                     "defined for the ViT backbones).")
    else:
        lines.append("- FLOPs of one image through the {} image encoder: {:.4g} G "
                     "multiply-adds = {:.4g} GFLOP (the \"17.6 GFLOPs\" quoted for "
                     "ViT-B/16 count multiply-adds; a device's FLOP/s count two per "
                     "multiply-add)".format(d["backbone"], d["macs_per_image"] / 1e9,
                                            flops / 1e9))
    lines.append("- dense matmul rate measured here ({0} x {0} by {0} x {0}): {1}".format(
        d["matmul_size"], ", ".join("{} {:.4g} TFLOP/s".format(k, v / 1e12)
                                    for k, v in peaks.items())))
    if flops is not None:
        lines.append("- bound = matmul rate / FLOPs per image: {}".format(", ".join(
            "{} {:.0f} images/s".format(k, v / flops) for k, v in peaks.items())))
    lines.append("- {} evaluation (`model_inference`, text features cached), precision {}, "
                 "fastest and median of the timed batches:".format(d["trainer"],
                                                                   d["precision"]))
    lines.append("")
    rows = []
    bound = bound_of(peaks, d["precision"], device, flops)
    for row in d["rows"]:
        achieved = "-" if flops is None else "{:.4g}".format(row["images_per_s"] * flops / 1e12)
        share = "-" if bound is None else "{:.0f} %".format(100 * row["images_per_s"] / bound)
        rows.append([row["batch"], fmt(row["images_per_s"]), fmt(row["median_images_per_s"]),
                     achieved, fmt(bound), share])
    lines += table(["batch", "img/s", "median img/s", "achieved TFLOP/s", "bound img/s",
                    "of the bound"], rows)
    if benches and flops is not None:
        lines += ["", "Every trainer's eval img/s in the benchmark tables above (test batch "
                      "of the benchmarks; prompted encoders add a few tokens, ~1-2 % more "
                      "work than counted), as a share of the bound of its precision:", ""]
        names = []
        for bench in benches.values():
            names += [r["trainer"] for r in bench["results"] if r["trainer"] not in names]
        rows = []
        for name in names:
            row = [name]
            for prec in benches:
                match = [r for r in benches[prec]["results"] if r["trainer"] == name]
                if not match:
                    row += ["-", "-"]
                    continue
                r = match[0]
                b = bound_of(peaks, r["precision"], device, flops)
                row += ["{} ({})".format(fmt(r["eval_images_per_s"]), r["precision"]),
                        "-" if b is None else "{:.0f} %".format(
                            100 * r["eval_images_per_s"] / b)]
            rows.append(row)
        header = ["trainer"]
        for prec in benches:
            header += ["--prec {}: img/s".format(prec), "of the bound"]
        lines += table(header, rows)
    return lines


def train_section(result):
    d = result.data
    step = d["step_s"]
    lines = [
        "- config: `configs/trainers/{}` (trainer {}), backbone {}, precision {}".format(
            d["config"], d["trainer"], d["backbone"], d["precision"]),
        "- data: the benchmarks' synthetic dataset, {} classes x 2 domains, one random "
        "{} px image each ({} images); the config's batch {} and transforms".format(
            d["classes"], d["resolution"], d["images"], d["batch"]),
        "- steps: {} epochs x {} batches = {}; wall time (build, training, test) {:.1f} s"
        .format(d["epochs"], d["batches_per_epoch"], d["steps"], d["wall_s"]),
        "- step time (mean of the last epoch, data loading included): {} ms = {} steps/s"
        .format(fmt(step, 1, 1000.0), "-" if not step else "{:.1f}".format(1.0 / step)),
        "- loss: first epoch mean {}, last epoch mean {}; {} logged values, all finite: {}"
        .format(fmt(d["first_epoch_loss"], 4), fmt(d["last_epoch_loss"], 4),
                d["logged_losses"], "yes" if d["losses_finite"] else "NO"),
        "- test: accuracy {} % on {} images (random images and weights: chance level is "
        "expected)".format(fmt(d["test_accuracy"]), d["test_total"]),
        "- peak GPU memory: {} MiB".format(fmt(d["peak_mem_mib"], 0)),
    ]
    return lines


def write_report(path, args, machine, results, elapsed_s):
    by_name = {r.name: r for r in results}
    lines = ["# GPU check", "",
             "- date: {:%Y-%m-%d %H:%M} UTC".format(
                 datetime.datetime.now(datetime.timezone.utc)),
             "- command: `{}`".format(" ".join(["bash", "benchmarks/gpu_check.sh"] + [
                 shlex.quote(a) for a in args.argv])),
             "- elapsed: {:.0f} s for the parts (budget {:.0f} s{})".format(
                 elapsed_s, args.budget_s, ", not enforced: --inline" if args.inline else ""),
             "", "## Machine", ""] + ["- " + line for line in machine]
    benches = {}
    for prec in PRECISIONS:
        name = "bench-" + prec
        lines += ["", "## Benchmarks: --prec {}".format(prec), ""]
        if name not in by_name:
            lines.append("Not run yet.")
        elif by_name[name].ok:
            lines += bench_section(by_name[name])
            benches[prec] = by_name[name].data
        else:
            lines += failure_lines(by_name[name])
    for name, title, render in (
            ("throughput", "Evaluation throughput against the FLOP bound",
             lambda r: throughput_section(r, benches, args.device)),
            ("train", "Training run", train_section)):
        lines += ["", "## " + title, ""]
        if name not in by_name:
            lines.append("Not run yet.")
        elif by_name[name].ok:
            lines += render(by_name[name])
        else:
            lines += failure_lines(by_name[name])
    lines += ["", "## Parts", ""]
    lines += table(["part", "status", "wall s", "cap s"],
                   [[r.name, r.status, "{:.1f}".format(r.wall_s), fmt(r.cap_s, 0)]
                    for r in results])
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(partial, path)


def main(argv=None):
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.part:
        return run_one_part(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    from .configs import TRAINER_CONFIGS

    args.trainers = args.trainers or list(TRAINER_CONFIGS)
    unknown = [t for t in args.trainers if t not in TRAINER_CONFIGS]
    if unknown:
        print("Error: --trainers: unknown {}; choose from {}.".format(
            ", ".join(unknown), ", ".join(TRAINER_CONFIGS)), file=sys.stderr)
        return 2
    results = run_check(args, log=lambda m: print(m, file=sys.stderr))
    print("Report written to {}".format(os.path.abspath(args.out)))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
