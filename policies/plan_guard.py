"""The plan-level guard: a split plan only where it is expected to beat one function. Pure.

The planner is exact against the performance model, and the model's all-serial plan is one of
its candidates, so by the model a chosen split is never slower than no split. The model is not
exact, though: it prices a leg by its share of the work times one slowdown per split kind, and
ResNet-50's legs on 7x7 and 14x14 maps run slower per MAC than its 56x56 ones (a 2-way tile of
the last bottlenecks takes ~0.8x the whole stage's time, not ~0.55x). ``tidegate profile``
measures how far the model misses on this model's own plans (``ModelTimes.plan_error``: warm p50
measured / predicted, for one function and for the latency plan at each fan-out); a split is
kept only when it still wins with each side's error applied. Otherwise the request runs in one
function, so the worst a "2-worker latency plan" can be is what one function measures.
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
    *,
    split_error: float = 1.0,
    serial_error: float = 1.0,
) -> PlanChoice:
    """``choice``, or the plan of ``serial`` stages (the whole model on the master) when that
    fits the memory limits and ``choice`` splits without being expected to beat it: its
    predicted p50 times ``split_error`` not below one function's times ``serial_error``."""
    if all(c.split == "serial" for c in choice.stages) or not fits(serial, limits):
        return choice
    one = model.predict(serial)
    if choice.prediction.p50_ms * split_error < one.p50_ms * serial_error:
        return choice
    return PlanChoice(tuple(serial), one)
