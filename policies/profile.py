"""Measured performance profiles as typed data (parsed from the dicts of ``profile.json``).

A profile says how long things take on one target: the invocation round trip of a function at
each fan-out (warm and cold), moving bytes by each transport, compute per node (this model,
measured) or per unit of work (any model, fitted), how much slower a leg computes when k run
at once, and a VM replica's service time per batch size. ``tidegate profile`` writes one; the
bundled reference profile (``policies/data/reference_profile.json``) covers the zoo models;
``policies/data/README.md`` says how, when and at what load it was measured.
Pure: no I/O here (callers read the JSON).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from policies.calibration import Calibration
from policies.compute_fit import (  # noqa: F401  (re-exported)
    ComputeFit,
    KindFit,
    op_family,
    op_kind,
)
from policies.profile_checks import ProfileError, check_numbers, check_profile

PROFILE_VERSION = 1
QUANTILE_POINTS = 21  # 0, 5, ..., 100 %
SHARE_PRICING, GRAPH_PRICING = "share", "graph"


@dataclass(frozen=True)
class Quantiles:
    """An empirical distribution: values at probabilities 0, 1/(n-1), ..., 1 (sorted)."""

    values_ms: tuple[float, ...]

    @classmethod
    def from_samples(cls, samples, points: int = QUANTILE_POINTS) -> "Quantiles":
        xs = sorted(float(s) for s in samples)
        if not xs:
            raise ProfileError("no samples")
        return cls(tuple(_interp(xs, i / (points - 1)) for i in range(points)))

    @classmethod
    def constant(cls, value_ms: float) -> "Quantiles":
        return cls((float(value_ms),) * 2)

    def at(self, p: float) -> float:
        """The quantile at probability ``p`` (linear between stored points)."""
        return _interp(self.values_ms, min(max(p, 0.0), 1.0))

    @property
    def median_ms(self) -> float:
        return self.at(0.5)

    def to_json(self) -> list[float]:
        return [round(v, 4) for v in self.values_ms]

    @classmethod
    def from_json(cls, raw, what: str) -> "Quantiles":
        if not isinstance(raw, list) or len(raw) < 2:
            raise ProfileError(f"{what}: expected a list of at least two quantiles")
        values = tuple(float(v) for v in raw)
        if any(b < a for a, b in zip(values, values[1:])) or values[0] < 0:
            raise ProfileError(f"{what}: quantiles must be non-negative and sorted")
        return cls(values)


def _interp(xs, p: float) -> float:
    pos = p * (len(xs) - 1)
    i = min(int(pos), len(xs) - 2) if len(xs) > 1 else 0
    if len(xs) == 1:
        return xs[0]
    return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)


@dataclass(frozen=True)
class TransferFit:
    """Time to move ``n`` bytes one way (write and read included): fixed + per MB."""

    fixed_ms: float
    ms_per_mb: float

    def ms(self, nbytes: int) -> float:
        return self.fixed_ms + self.ms_per_mb * nbytes / 1e6


@dataclass(frozen=True)
class ModelTimes:
    """Measured single-thread time of each node of one model at batch 1, for one input shape."""

    input_shape: tuple[int, ...]
    node_ms: dict[str, float]
    vm_service_ms: dict[int, Quantiles] = field(default_factory=dict)  # batch -> distribution
    # plan workers -> what a request on fresh function instances (instance start, imports,
    # weight load) takes beyond a warm one: latency, and billed ms over its invocations.
    # Optional: older profiles have neither (callers fall back to ``invoke_cold_ms``).
    cold_start_ms: dict[int, Quantiles] = field(default_factory=dict)
    cold_billed_ms: dict[int, Quantiles] = field(default_factory=dict)
    # plan workers -> measured warm p50 / uncalibrated predicted p50 of the latency plan at
    # those workers (1: the whole model in one function), from ``tidegate profile``'s own
    # runs: a record of how far the model missed before ``calibration``
    plan_error: dict[int, float] = field(default_factory=dict)
    # the per-component scales fitted from those runs, which ``policies.perf`` applies
    calibration: Calibration = field(default_factory=Calibration)
    # conv nodes run plain (``node_ms`` runs them packed), for stages a plan leaves plain
    plain_node_ms: dict[str, float] = field(default_factory=dict)

    def error_at(self, workers: int) -> float:
        """The recorded plan error at ``workers``: one function's at 1; for a split, the
        nearest split measured at or below (else the smallest measured); 1.0 if none."""
        if workers <= 1:
            return self.plan_error.get(1, 1.0)
        ks = sorted(k for k in self.plan_error if k >= 2)
        below = [k for k in ks if k <= workers]
        return self.plan_error[below[-1] if below else ks[0]] if ks else 1.0

    def cold_start(self, workers: int) -> tuple[Quantiles, Quantiles] | None:
        """(latency, billed) of a cold start of the plan at ``workers`` (the nearest measured
        at or below, else the smallest measured), or None if never measured."""
        ks = sorted(k for k in self.cold_start_ms if k in self.cold_billed_ms)
        if not ks:
            return None
        below = [k for k in ks if k <= workers]
        k = below[-1] if below else ks[0]
        return self.cold_start_ms[k], self.cold_billed_ms[k]


@dataclass(frozen=True)
class Profile:
    source: str  # how it was made (command, machine, date) and where prices come from
    cores: int  # cores the function instances share (legs beyond it queue for CPU)
    invoke_warm_ms: dict[int, Quantiles]  # fan-out k -> one leg's round trip beyond its work
    invoke_cold_ms: Quantiles
    master_overhead_ms: Quantiles  # the gateway's master invocation beyond the stages
    transfer: dict[str, TransferFit]  # "inline", "dir", "s3"
    compute: ComputeFit
    split_slowdown: dict[str, dict[int, float]]  # split kind -> k -> leg compute / predicted
    compute_cv: float = 0.05  # spread of one leg's compute (lognormal sigma)
    models: dict[str, ModelTimes] = field(default_factory=dict)
    # split kind -> k -> ms a leg spends per node beyond its share of the work: dispatch,
    # cropping and padding do not shrink with the tile (MobileNet's legs take as long as the
    # whole stage at half the work)
    split_node_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    # split kind -> k -> ms a leg spends once, whatever its nodes and share: the master's own
    # leg starts once its remote requests are out (1-1.5 ms after its sends). Optional:
    # profiles before it carry that in the per-node time
    split_leg_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    # the models whose times this profile measured itself (``tidegate profile`` copies the
    # bundled profile's other models in, for the planner); empty in profiles before it
    measured_models: tuple[str, ...] = ()
    # how a split leg's compute is priced from the stage's node times (``policies.perf``):
    # "share" (profiles before it: the leg's share of the MACs, halos included, of all of
    # it) or "graph" (each node's dispatch, and a spatial leg's weight reads, paid whole by
    # every leg; the rest by its share). A model's split calibration is relative to it.
    split_pricing: str = SHARE_PRICING
    # "graph" pricing: what a conv's call on a tile costs whatever the tile's share (per MB of
    # the node's activations and of its weights; ``ops/bench/plan7_tiles.py``)
    tile_call: KindFit = KindFit()

    def invoke_ms(self, workers: int) -> Quantiles:
        """A leg's warm overhead at fan-out ``workers`` (nearest measured at or below, else the
        largest measured scaled by the share of cores it must wait for)."""
        ks = sorted(self.invoke_warm_ms)
        i = bisect.bisect_right(ks, workers) - 1
        return self.invoke_warm_ms[ks[max(i, 0)]]

    def slowdown(self, split: str, workers: int) -> float:
        """Leg compute at fan-out ``workers`` relative to one thread alone: measured points,
        linear between them, and ``workers / cores`` growth past the largest."""
        table = self.split_slowdown.get(split) or {1: 1.0}
        ks = sorted(table)
        if workers <= ks[0]:
            return table[ks[0]]
        if workers >= ks[-1]:
            return table[ks[-1]] * max(1.0, workers / max(ks[-1], self.cores))
        i = bisect.bisect_right(ks, workers) - 1
        lo, hi = ks[i], ks[i + 1]
        return table[lo] + (table[hi] - table[lo]) * (workers - lo) / (hi - lo)

    def node_overhead_ms(self, split: str, workers: int) -> float:
        """A leg's time per node beyond its share of the work (measured at the nearest
        fan-out at or below ``workers``; 0 where not measured)."""
        return _at_or_below(self.split_node_ms.get(split) or {}, workers)

    def leg_overhead_ms(self, split: str, workers: int) -> float:
        """A leg's fixed time beyond its nodes and its share of the work (measured at the
        nearest fan-out at or below ``workers``; 0 where not measured)."""
        return _at_or_below(self.split_leg_ms.get(split) or {}, workers)

    @property
    def host_drift_cv(self) -> float:
        """The host's drift between windows (sd / mean): the widest of the drifts read while
        this profile measured its models (``Calibration.drift_cv``; 0 if none). Drift is the
        host's, not a model's: a model profiled in a calm minute read 0.13 (VGG-16) where the
        host's other runs read 0.20, and its cheapest plan's p99 missed the SLO on its own
        prediction (plan_accuracy, 1 Dec: p99 283 and 335 ms against 276)."""
        return max(
            (self.models[m].calibration.drift_cv for m in self.measured_models if m in self.models),
            default=0.0,
        )

    def transfer_fit(self, transport: str) -> TransferFit:
        return self.transfer.get(transport) or self.transfer["dir"]

    def times_for(self, model: str, input_shape) -> ModelTimes | None:
        """This model's measured node times, if measured at this input shape."""
        t = self.models.get(model)
        if t is None or list(t.input_shape[1:]) != list(input_shape[1:]):
            return None
        return t

    # JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "profile_version": PROFILE_VERSION,
            "source": self.source,
            "cores": self.cores,
            "invoke_warm_ms": {str(k): q.to_json() for k, q in self.invoke_warm_ms.items()},
            "invoke_cold_ms": self.invoke_cold_ms.to_json(),
            "master_overhead_ms": self.master_overhead_ms.to_json(),
            "transfer": {
                k: {"fixed_ms": round(f.fixed_ms, 4), "ms_per_mb": round(f.ms_per_mb, 4)}
                for k, f in self.transfer.items()
            },
            "compute": _compute_json(self.compute),
            "split_slowdown": {
                s: {str(k): round(v, 4) for k, v in t.items()}
                for s, t in self.split_slowdown.items()
            },
            "compute_cv": self.compute_cv,
            "split_node_ms": {
                s: {str(k): round(v, 5) for k, v in t.items()}
                for s, t in self.split_node_ms.items()
            },
            "split_leg_ms": {
                s: {str(k): round(v, 5) for k, v in t.items()} for s, t in self.split_leg_ms.items()
            },
            "measured_models": sorted(self.measured_models),
            "split_pricing": self.split_pricing,
            "tile_call": self.tile_call.to_json(),
            "models": {
                m: {
                    "input_shape": list(t.input_shape),
                    "node_ms": {n: round(v, 5) for n, v in t.node_ms.items()},
                    "vm_service_ms": {str(b): q.to_json() for b, q in t.vm_service_ms.items()},
                    "cold_start_ms": {str(k): q.to_json() for k, q in t.cold_start_ms.items()},
                    "cold_billed_ms": {str(k): q.to_json() for k, q in t.cold_billed_ms.items()},
                    "plan_error": {str(k): round(v, 4) for k, v in t.plan_error.items()},
                    "calibration": t.calibration.to_json(),
                    "plain_node_ms": {n: round(v, 5) for n, v in t.plain_node_ms.items()},
                }
                for m, t in self.models.items()
            },
        }

    @classmethod
    def from_json(cls, raw) -> "Profile":
        if not isinstance(raw, dict) or raw.get("profile_version") != PROFILE_VERSION:
            raise ProfileError(f"not a version {PROFILE_VERSION} profile")
        check_numbers(raw, "profile")
        try:
            profile = cls(
                source=str(raw["source"]),
                cores=int(raw["cores"]),
                invoke_warm_ms={
                    int(k): Quantiles.from_json(v, f"invoke_warm_ms[{k}]")
                    for k, v in raw["invoke_warm_ms"].items()
                },
                invoke_cold_ms=Quantiles.from_json(raw["invoke_cold_ms"], "invoke_cold_ms"),
                master_overhead_ms=Quantiles.from_json(
                    raw["master_overhead_ms"], "master_overhead_ms"
                ),
                transfer={
                    k: TransferFit(float(v["fixed_ms"]), float(v["ms_per_mb"]))
                    for k, v in raw["transfer"].items()
                },
                compute=_compute_fit(raw["compute"]),
                split_slowdown={
                    s: {int(k): float(v) for k, v in t.items()}
                    for s, t in raw["split_slowdown"].items()
                },
                compute_cv=float(raw.get("compute_cv", 0.05)),
                split_node_ms={
                    s: {int(k): float(v) for k, v in t.items()}
                    for s, t in raw.get("split_node_ms", {}).items()
                },
                split_leg_ms={
                    s: {int(k): float(v) for k, v in t.items()}
                    for s, t in raw.get("split_leg_ms", {}).items()
                },
                models={m: _model_times(m, t) for m, t in raw.get("models", {}).items()},
                measured_models=tuple(str(m) for m in raw.get("measured_models", ())),
                split_pricing=str(raw.get("split_pricing", SHARE_PRICING)),
                tile_call=KindFit.from_json(raw.get("tile_call", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"malformed profile: {exc!r}") from exc
        check_profile(profile)
        return profile

    def with_model(self, model: str, times: ModelTimes) -> "Profile":
        """This profile with ``model``'s times, measured here."""
        models = dict(self.models)
        models[model] = times
        measured = tuple(sorted({*self.measured_models, model}))
        return Profile(**{**self.__dict__, "models": models, "measured_models": measured})


def _compute_json(fit: ComputeFit) -> dict:
    out: dict = {"ms_per_gmac": fit.ms_per_gmac, "fixed_ms_per_node": fit.fixed_ms_per_node}
    if fit.kinds:  # absent: the MACs-only fit, as profiles before the bytes-aware one
        out["kinds"] = {k: f.to_json() for k, f in sorted(fit.kinds.items())}
    return out


def _compute_fit(raw: dict) -> ComputeFit:
    return ComputeFit(
        {k: float(v) for k, v in raw["ms_per_gmac"].items()},
        float(raw["fixed_ms_per_node"]),
        {str(k): KindFit.from_json(v) for k, v in raw.get("kinds", {}).items()},
    )


def _at_or_below(table: dict[int, float], workers: int) -> float:
    ks = [k for k in sorted(table) if k <= workers]
    return table[ks[-1]] if ks else 0.0


def _model_times(model: str, raw: dict) -> ModelTimes:
    return ModelTimes(
        input_shape=tuple(int(d) for d in raw["input_shape"]),
        node_ms={str(n): float(v) for n, v in raw["node_ms"].items()},
        vm_service_ms={
            int(b): Quantiles.from_json(q, f"{model} vm_service_ms[{b}]")
            for b, q in raw.get("vm_service_ms", {}).items()
        },
        cold_start_ms={
            int(k): Quantiles.from_json(q, f"{model} cold_start_ms[{k}]")
            for k, q in raw.get("cold_start_ms", {}).items()
        },
        cold_billed_ms={
            int(k): Quantiles.from_json(q, f"{model} cold_billed_ms[{k}]")
            for k, q in raw.get("cold_billed_ms", {}).items()
        },
        plan_error={int(k): float(v) for k, v in raw.get("plan_error", {}).items()},
        calibration=Calibration.from_json(raw.get("calibration")),
        plain_node_ms={str(n): float(v) for n, v in raw.get("plain_node_ms", {}).items()},
    )
