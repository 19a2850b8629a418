"""The benchmark's targets, in one place, and the verdict printed for them.

Step time: a trainer's step over its baseline's, measured in the same
process, at most the target's limit; where the limit depends on the device,
``gpu_limit`` holds the GPU's (``--device cuda``). A new baseline's target
is against its official code (:data:`OFFICIAL_CODE`), which no in-process
run measures: the table holds it and the verdict says so. Evaluation:
images/s of every prompt trainer at least :data:`EVAL_MIN_RATIO` of
ZeroshotCLIP's. docs/BENCHMARKS.md lists the same numbers.

A ratio is judged as printed (3 decimals), so a cell never reads
``FAIL 1.350x (<= 1.35x ...)``.
"""
from dataclasses import dataclass
from typing import Optional

#: the baseline of a target measured against the method's official code
OFFICIAL_CODE = "its official code"
#: step-time limit of every new baseline against its official code
NEW_BASELINE_LIMIT = 0.8
#: decimals of a printed ratio (and of the ratio a verdict judges)
RATIO_DIGITS = 3


@dataclass(frozen=True)
class StepTarget:
    """``step / baseline's step <= limit`` (``gpu_limit`` on a GPU, when set)."""

    baseline: str
    limit: float
    gpu_limit: Optional[float] = None

    def limit_on(self, device):
        """The limit on ``device`` ("cpu" or "cuda")."""
        if on_gpu(device) and self.gpu_limit is not None:
            return self.gpu_limit
        return self.limit

    @property
    def device_dependent(self):
        return self.gpu_limit is not None and self.gpu_limit != self.limit

    @property
    def in_process(self):
        """Whether ``benchmarks.run`` measures the baseline beside the trainer."""
        return self.baseline != OFFICIAL_CODE


def new_baseline_target():
    """The target of a baseline added to the project: at most
    :data:`NEW_BASELINE_LIMIT` x its official code's step."""
    return StepTarget(OFFICIAL_CODE, NEW_BASELINE_LIMIT)


#: trainer (benchmark name) -> its step-time target
STEP_TARGETS = {
    # DiSa: 1.5x on the CPU; on a GPU the batched masked pass (DiSa-batched)
    # is held to 1.25x, the gathered default keeps 1.5x
    "DiSa": StepTarget("PromptSRC", 1.5),
    "DiSa-batched": StepTarget("PromptSRC", 1.5, gpu_limit=1.25),
    "ISP": StepTarget("MaPLe", 1.35),
    "ISP-lite": StepTarget("MaPLe", 1.1),
    "GuiDG": StepTarget("ERMWiSEFT", 1.5),
    # a new baseline NAME gets: "NAME": new_baseline_target(),
}

#: eval images/s of every prompt trainer >= this fraction of ZeroshotCLIP's
EVAL_BASELINE, EVAL_MIN_RATIO = "ZeroshotCLIP", 0.95
EVAL_TARGET_TRAINERS = ("CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DiSa", "DiSa-batched",
                        "ISP", "ISP-lite")


def on_gpu(device):
    return str(device).split(":", 1)[0] == "cuda"


def step_verdict(target, ratio, device):
    """``(passed or None, cell text)`` of a step-time ``ratio`` (None: the
    baseline was not run) against ``target`` on ``device``."""
    limit = target.limit_on(device)
    where = " on the {}".format("GPU" if on_gpu(device) else "CPU") if target.device_dependent \
        else ""
    bound = "<= {}x {}{}".format(limit, target.baseline, where)
    if not target.in_process:
        return None, "n/a ({}: not measured in-process)".format(bound)
    if ratio is None:
        return None, "n/a (run {} too)".format(target.baseline)
    passed = round(ratio, RATIO_DIGITS) <= limit
    return passed, "{} {:.{}f}x ({})".format("PASS" if passed else "FAIL", ratio, RATIO_DIGITS,
                                            bound)


def eval_verdict(ratio):
    """``(passed or None, cell text)`` of an eval-rate ratio over ZeroshotCLIP's."""
    if ratio is None:
        return None, "n/a (run {} too)".format(EVAL_BASELINE)
    passed = round(ratio, RATIO_DIGITS) >= EVAL_MIN_RATIO
    return passed, "{} {:.{}f}x (>= {}x {})".format("PASS" if passed else "FAIL", ratio,
                                                   RATIO_DIGITS, EVAL_MIN_RATIO, EVAL_BASELINE)
