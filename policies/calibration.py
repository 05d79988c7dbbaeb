"""How far one model's real plans ran from the performance model, per component. Pure.

``tidegate profile`` runs real plans of the model it profiles (one function, and plans split
at each fan-out it is given) and compares each warm p50 with the uncalibrated prediction. The
miss is attributed to the part of the plan that carries it, not to the whole plan:

* the gateway's master invocation is measured directly in those runs (the time beyond the
  master's own report), so it is taken as exact;
* **compute**: the node times of ``tidegate profile`` are thread CPU time in the profiling
  process, a few passes on a shared host, and a function instance runs the nodes at its own
  pace (MobileNetV2's 150 small nodes ran at ~0.82x their profiled sum in a function here,
  ResNet-50's at 0.74x to 0.94x from one profile to the next). The one-function plan is all
  compute, so it alone sets this scale, and it applies to the nodes wherever they run: the
  master's serial stages and the legs of split ones alike (the legs' slowdowns are relative
  to the same node times);
* **split** stages (legs, round trips, transfers, the join) at each fan-out: what the plans at
  that fan-out measured beyond the fixed part and their serial part, over what the model
  (with the compute scale) gave their split stages; the planner's own plans where they split
  enough to tell, else forced splits, and those only to make splits dearer
  (``_forced_scale``).

* **spread**: how far the profile's warm requests of every real plan run above their plan's
  median beyond the master invocation's own spread, over the plan's compute, read at their
  upper tail, taken as exponential (``fit_spread``). On a shared host the drift moves a
  request's compute together, serial and split stages alike, and the model spreads it that
  way (``policies.perf``).

``policies.perf.PerfModel`` applies the scales to every stage it prices, so the planner's
objectives (including the p99 the cost objective holds to an SLO), ``tidegate plan``, the
gateway and the simulator all see the same calibrated distribution. A fan-out that was not
measured takes the scale interpolated between the measured ones (the nearest one outside
them); a model without runs is not scaled. Scales are bounded (``SCALE_BOUNDS``): a profile
measured on a machine under a passing storm must not turn into predictions off by 5x.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from statistics import NormalDist

SCALE_BOUNDS = (0.5, 2.0)
CV_BOUNDS = (0.01, 0.3)
_SPREAD_Z = 2.5631  # (p90 - p10) / this is a normal's sd: robust to one stray request
_NORMAL = NormalDist()
# the percentile at which a request's spread is matched (``tail_sd``): the SLO's
TAIL_Q = 0.99
# a plan whose split stages are under this share of its prediction says little about splits:
# a plan's warm p50 wanders 5-10 % from run to run here, and ResNet-18's 2-worker plan, one
# split stage at ~15 % of it, measured 5.5 ms over the model and gave the split scale 1.42x
# (its forced splits then measured 0.73x the calibrated model)
MIN_SPLIT_SHARE = 0.25
MIN_PROBES = 20  # host probes a drift is read from (``fit_drift``)
# requests of the planner's own plans a spread is read from alone (``fit_spread``)
MIN_SPREAD_REQUESTS = 12


@dataclass(frozen=True)
class Calibration:
    """Measured / modelled time, per component: the model's node times wherever they run, and
    the split stages' wall time per fan-out (legs of a stage)."""

    compute: float = 1.0
    split: dict[int, float] = field(default_factory=dict)
    compute_cv: float = 0.0  # a request's compute spread, sd / mean (0: the profile's)
    # the host's drift between windows, sd / mean (``fit_drift``): on top of compute_cv
    drift_cv: float = 0.0

    def split_at(self, workers: int) -> float:
        """The split scale at fan-out ``workers``: linear between measured fan-outs, the
        nearest measured one outside them, 1.0 if none was measured."""
        ks = sorted(self.split)
        if not ks:
            return 1.0
        if workers <= ks[0]:
            return self.split[ks[0]]
        if workers >= ks[-1]:
            return self.split[ks[-1]]
        i = bisect.bisect_right(ks, workers) - 1
        lo, hi = ks[i], ks[i + 1]
        return self.split[lo] + (self.split[hi] - self.split[lo]) * (workers - lo) / (hi - lo)

    @property
    def is_identity(self) -> bool:
        return self.compute == 1.0 and all(v == 1.0 for v in self.split.values())

    def to_json(self) -> dict:
        return {
            "compute": round(self.compute, 4),
            "split": {str(k): round(v, 4) for k, v in sorted(self.split.items())},
            "compute_cv": round(self.compute_cv, 4),
            "drift_cv": round(self.drift_cv, 4),
        }

    @classmethod
    def from_json(cls, raw) -> "Calibration":
        if not raw:
            return cls()
        return cls(
            compute=float(raw.get("compute", 1.0)),
            split={int(k): float(v) for k, v in raw.get("split", {}).items()},
            compute_cv=float(raw.get("compute_cv", 0.0)),
            drift_cv=float(raw.get("drift_cv", 0.0)),
        )

    @property
    def request_cv(self) -> float | None:
        """A request's whole compute spread: within a window and the host's drift between
        windows, independent (None without a fitted within-window spread: the profile's)."""
        if not self.compute_cv:
            return None
        return math.hypot(self.compute_cv, self.drift_cv)


@dataclass(frozen=True)
class PlanRun:
    """One real plan's warm p50 against the uncalibrated model's view of it."""

    workers: int  # the largest fan-out of its split stages (1: no split stage)
    measured_p50_ms: float
    predicted_p50_ms: float
    serial_ms: float  # the model's mean for its serial stages
    split_ms: float  # the model's mean for its split stages
    planned: bool  # the planner's own plan at these workers (else a forced split)

    @property
    def fixed_ms(self) -> float:
        """What the prediction holds beyond the stages: the gateway's master invocation."""
        return self.predicted_p50_ms - self.serial_ms - self.split_ms


def _bounded(scale: float) -> float:
    lo, hi = SCALE_BOUNDS
    return min(max(scale, lo), hi)


def fit_compute(runs: list[PlanRun]) -> float:
    """The compute scale from one-function runs predicted without calibration (ratio of
    sums); 1.0 without any."""
    one = [r for r in runs if r.split_ms == 0.0 and r.serial_ms > 0.0 and r.workers <= 1]
    if not one:
        return 1.0
    return _bounded(
        sum(r.measured_p50_ms - r.fixed_ms for r in one) / sum(r.serial_ms for r in one)
    )


def fit_split(runs: list[PlanRun]) -> dict[int, float]:
    """Split scales per fan-out from runs predicted with the compute scale applied: the
    planner's own plans there whose split share is worth fitting (ratio of sums), else
    ``_forced_scale``; a fan-out without either is left out."""
    split: dict[int, float] = {}
    for k in sorted({r.workers for r in runs if r.workers >= 2}):
        useful = [
            r for r in runs if r.workers == k and r.split_ms >= MIN_SPLIT_SHARE * r.predicted_p50_ms
        ]
        planned = [r for r in useful if r.planned]
        if planned:
            rest = sum(_split_part(r) for r in planned)
            split[k] = _bounded(rest / sum(r.split_ms for r in planned))
        elif useful:
            split[k] = _forced_scale(useful)
    return split


def _split_part(run: PlanRun) -> float:
    """The measured time of a run's split stages: all but its fixed and serial parts."""
    return run.measured_p50_ms - run.fixed_ms - run.serial_ms


def _forced_scale(runs: list[PlanRun]) -> float:
    """The split scale from forced plans alone (the planner split nothing worth fitting at
    this fan-out): at least 1, the least of theirs. Forced plans split every stage, most of
    which the planner would never choose (ResNet-50's 54 output-split stages at 4 legs ran
    at 0.37x the model, its 6 spatial ones at 0.64x); believing them down would make the
    planner's few best splits look cheap, and a 2-stage plan so chosen measured 1.5x its
    prediction. Evidence that splits run slower than the model is kept."""
    return _bounded(max(1.0, min(_split_part(r) / r.split_ms for r in runs)))


def robust_sd(samples_ms) -> float:
    """sd read from the 10th to 90th percentile range (one stray request does not set it)."""
    xs = sorted(samples_ms)
    if len(xs) < 3:
        return 0.0
    return (_at(xs, 0.9) - _at(xs, 0.1)) / _SPREAD_Z


def _at(xs: list[float], p: float) -> float:
    pos = p * (len(xs) - 1)
    i = min(int(pos), len(xs) - 2)
    return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)


@dataclass(frozen=True)
class PlanSpread:
    """One real plan's warm requests: their totals, and the compute and fixed-part spread
    the model gives it (the rest of a request's spread is its compute's)."""

    totals_ms: tuple[float, ...]
    compute_ms: float  # its measured p50 beyond the fixed part
    fixed_sd_ms: float  # the master invocation's own spread
    planned: bool = True  # a plan the planner makes (one function, its own splits)


def tail_sd(deviations: list[float]) -> float:
    """The sd of a normal whose ``TAIL_Q`` quantile sits where these deviations' (from their
    plan's median) is, read as an exponential tail: requests here run slow by a delay whose
    excess over the median is near exponential, so its quantile q is theta * ln(0.5 / (1-q))
    with theta the mean excess of the requests above the median (all of them count, not one
    order statistic). VGG-16's 288 benchmark requests: theta 7.6 %, so p95 +17.6 % and p99
    +29.8 %, where +17.5 % and +29.8 % were measured; a normal through their p10-p90 put the
    p99 at +21 %. For a normal spread it errs slow: 1.34x its sd."""
    above = [d for d in deviations if d > 0]
    if len(deviations) < 3 or not above:
        return 0.0
    theta = sum(above) / len(above)
    return theta * math.log(0.5 / (1.0 - TAIL_Q)) / _NORMAL.inv_cdf(TAIL_Q)


def fit_spread(plans: list[PlanSpread]) -> float:
    """A request's compute spread (sd / mean), from the real plans a profile ran: each
    request's distance above its own plan's median over that plan's compute, pooled (a plan's
    few requests cannot show a p99; plans measured in turns span the whole run, so the
    host's drift over it is in them), read as an exponential tail (``tail_sd``), less the
    master invocation's own spread. The plans the planner makes where they ran at least
    ``MIN_SPREAD_REQUESTS``: the forced all-spatial and all-output plans, dozens of rounds
    each, spread wider than any plan served (VGG-16's pooled spread 24-30 % put its
    predicted p99 26-75 % over the measured). 0 (the profile's) without enough requests."""
    planned = [p for p in plans if p.planned and len(p.totals_ms) >= 3 and p.compute_ms > 0]
    if sum(len(p.totals_ms) for p in planned) >= MIN_SPREAD_REQUESTS:
        plans = planned
    deviations: list[float] = []
    fixed_rel2: list[float] = []
    for p in plans:
        if len(p.totals_ms) < 3 or p.compute_ms <= 0:
            continue
        median = _at(sorted(p.totals_ms), 0.5)
        deviations += [(t - median) / p.compute_ms for t in p.totals_ms]
        fixed_rel2 += [(p.fixed_sd_ms / p.compute_ms) ** 2] * len(p.totals_ms)
    if len(deviations) < 3:
        return 0.0
    cv2 = tail_sd(deviations) ** 2 - sum(fixed_rel2) / len(fixed_rel2)
    lo, hi = CV_BOUNDS
    return min(max(max(cv2, 0.0) ** 0.5, lo), hi)


def fit_drift(probe_ms: list[float]) -> float:
    """The host's drift between windows (sd / mean) from the host probe's series over a whole
    profile (``ops.profile_drift``: one fixed piece of work after every timed request of every
    plan): its deviations from the series' median, over the median, matched at ``TAIL_Q``
    to the larger of their exponential-tail reading (``tail_sd``) and their own 98th
    percentile. The host's episodes of 1.3-1.6x slower compute, seconds long and a few per
    cent of the time, make a step, not a tail: read as exponential, 8 % of probes 44 % slow
    put the p99 at +27 %; their own percentile at +44 % (a 98th, and the tail without the
    slowest probe: one stray probe does not set it). A plan's requests, taken in a few
    seconds, miss those episodes or fold them into their median; a request served minutes
    later carries them. The probe's own noise (1-2 % on a quiet host) stays in: on the safe
    side. 0 without enough probes; at most ``CV_BOUNDS``'s top."""
    if len(probe_ms) < MIN_PROBES:
        return 0.0
    xs = sorted(probe_ms)
    median = _at(xs, 0.5)
    if median <= 0:
        return 0.0
    deviations = [(t - median) / median for t in xs]
    step_sd = max(_at(deviations, 0.98), 0.0) / _NORMAL.inv_cdf(TAIL_Q)
    return min(max(tail_sd(deviations[:-1]), step_sd), CV_BOUNDS[1])  # less the slowest
