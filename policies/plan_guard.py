"""The plan-level guard: a split plan only where it is expected to beat one function. Pure.

The planner is exact against the performance model, and the model's all-serial plan is one of
its candidates, so by the model's mean a chosen split is never slower than no split. The
model is calibrated on this model's own plans (``policies.calibration``: ``tidegate profile``
measures how far serial compute and split stages at each fan-out missed, and ``policies.perf``
scales them), so a split that measured slower than the model said is priced that way before the
search: ResNet-50's legs on 7x7 and 14x14 maps run slower per MAC than its 56x56 ones (a 2-way
tile of the last bottlenecks takes ~0.8x the whole stage's time, not ~0.55x). What is left here
is the reported p50 (the median of a skewed sum, not the mean the search minimises): the
request runs in one function whenever that fits and its predicted p50 is not above the
split's, so the worst a "2-worker latency plan" can be predicted at is one function's.
"""

from __future__ import annotations

from policies.perf import PerfModel
from policies.planner import Candidate, Limits, PlanChoice
from policies.planner import _resources  # the planner's own rounding of weight bytes


def fits(stages: list[Candidate], limits: Limits) -> bool:
    """Whether a plan of ``stages`` fits the functions' weight budgets."""
    master = worker = 0
    for c in stages:
        m, w = _resources(c)
        master, worker = master + m, worker + w
    return master <= limits.master_weight_bytes and worker <= limits.worker_weight_bytes


def no_slower_than_serial(
    model: PerfModel,
    choice: PlanChoice,
    serial: list[Candidate],
    limits: Limits,
) -> PlanChoice:
    """``choice``, or the plan of ``serial`` stages (the whole model on the master) when that
    fits the memory limits and ``choice`` splits without a lower predicted p50 than it."""
    if all(c.split == "serial" for c in choice.stages) or not fits(serial, limits):
        return choice
    one = model.predict(serial)
    if choice.prediction.p50_ms < one.p50_ms:
        return choice
    return PlanChoice(tuple(serial), one)
