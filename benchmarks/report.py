"""The benchmark table: absolute numbers, ratios against baselines measured
in the same process, and the targets (:mod:`benchmarks.targets`) as
pass/fail columns."""
import tabulate
import torch

from .measure import device_name, memory_kind
from .targets import (EVAL_BASELINE, EVAL_TARGET_TRAINERS, STEP_TARGETS, eval_verdict,
                      step_verdict)

#: variant -> the trainer's default it switches (step ratio printed under the table)
VARIANT_BASES = {"DiSa-batched": "DiSa", "ISP-lite": "ISP"}
STEP_BASELINES = ("IVLP", "PromptSRC")

COLUMNS = ["trainer", "prec", "batch", "step ms", "step / IVLP", "step / PromptSRC",
           "eval img/s", "eval / ZeroshotCLIP", "first batch extra ms", "train mem MiB",
           "eval mem MiB", "model MiB", "step target", "eval target"]


def _ratio(value, base):
    if value is None or base is None or base <= 0:
        return None
    return value / base


def _fmt(value, digits=2):
    return "-" if value is None else "{:.{}f}".format(value, digits)


def step_target(result, by_name, device="cpu"):
    """``(passed or None, cell text)`` of the step-time target of a trainer
    on ``device`` ("cpu" or "cuda")."""
    if result.trainer not in STEP_TARGETS:
        return None, "-"
    target = STEP_TARGETS[result.trainer]
    base = by_name.get(target.baseline)
    return step_verdict(target, _ratio(result.step_s, base.step_s if base else None), device)


def eval_target(result, by_name):
    if result.trainer not in EVAL_TARGET_TRAINERS:
        return None, "-"
    base = by_name.get(EVAL_BASELINE)
    return eval_verdict(_ratio(result.eval_images_per_s, base.eval_images_per_s if base else None))


def table_rows(results, device="cpu"):
    """One row (a list, in :data:`COLUMNS` order) per result; the step
    targets are ``device``'s ("cpu" or "cuda")."""
    by_name = {r.trainer: r for r in results}
    rows = []
    for r in results:
        step_ms = None if r.step_s is None else 1000 * r.step_s
        bases = [by_name[b].step_s if b in by_name else None for b in STEP_BASELINES]
        zs = by_name.get(EVAL_BASELINE)
        rows.append([
            r.trainer, r.precision, r.batch_size, _fmt(step_ms, 1),
            _fmt(_ratio(r.step_s, bases[0])), _fmt(_ratio(r.step_s, bases[1])),
            _fmt(r.eval_images_per_s, 1),
            _fmt(_ratio(r.eval_images_per_s, zs.eval_images_per_s if zs else None)),
            _fmt(1000 * r.text_once_s, 1), _fmt(r.train_mem_mib, 1), _fmt(r.eval_mem_mib, 1),
            _fmt(r.model_mib, 1), step_target(r, by_name, device)[1], eval_target(r, by_name)[1],
        ])
    return rows


def variant_lines(results):
    """One line per variant measured beside its default: the step-time ratio."""
    by_name = {r.trainer: r for r in results}
    lines = []
    for r in results:
        base = by_name.get(VARIANT_BASES.get(r.trainer))
        ratio = _ratio(r.step_s, base.step_s if base else None)
        if ratio is not None:
            lines.append("{}: step {:.3f}x {}'s ({:.1f} ms / {:.1f} ms, same process)".format(
                r.trainer, ratio, base.trainer, 1000 * r.step_s, 1000 * base.step_s))
    return lines


def _footer(lines):
    """``lines`` after a blank line, or nothing."""
    return "\n" + "\n".join(lines) + "\n" if lines else ""


def header_lines(settings, describe_backbone):
    s = settings
    return [
        "device: {} ({}), {} torch CPU thread(s), torch {}".format(
            device_name(s.device), s.device, s.threads, torch.__version__),
        "backbone: {}".format(describe_backbone(s.backbone)),
        "precision: {}".format(s.prec or "each config's PREC (fp32 on the CPU)"),
        "synthetic data: {} classes; test batch {}; train batch as in each config".format(
            s.n_classes, s.test_batch),
        "timing: fastest of {} train steps after {} warm-up and of {} cached test batches; "
        "round-robin over the trainers, each round starting with the next".format(s.steps, s.warmup, s.eval_batches),
        "memory: {} (MiB over the resident model)".format(memory_kind(s.device)),
    ]


def render(settings, results, describe_backbone, tablefmt="github"):
    """Header lines and the table as one string."""
    lines = header_lines(settings, describe_backbone)
    table = tabulate.tabulate(table_rows(results, settings.device), headers=COLUMNS,
                              tablefmt=tablefmt, disable_numparse=True)
    return "\n".join(lines) + "\n\n" + table + "\n" + _footer(variant_lines(results))


def render_markdown(settings, results, describe_backbone):
    lines = ["- " + line for line in header_lines(settings, describe_backbone)]
    table = tabulate.tabulate(table_rows(results, settings.device), headers=COLUMNS,
                              tablefmt="github", disable_numparse=True)
    variants = ["- " + line for line in variant_lines(results)]
    return ("# Benchmark results\n\n" + "\n".join(lines) + "\n\n" + table + "\n"
            + _footer(variants))
