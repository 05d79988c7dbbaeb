"""Live-state snapshots that routing and autoscaling decide from (plain, frozen data).

The gateway's collector (``gateway/live.py``) and the simulator both build these; policies only
read them. Times are seconds on the caller's clock, latencies milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Protocol

from .vm_factor import FactorTable


class Clock(Protocol):
    def now(self) -> float: ...


class ManualClock:
    """A clock the caller moves (tests and the simulator)."""

    def __init__(self, start_s: float = 0.0):
        self.now_s = start_s

    def now(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> float:
        self.now_s += seconds
        return self.now_s


class PathKind(str, Enum):
    VM = "vm"
    BURST = "burst"


@dataclass(frozen=True)
class LatencyQuantiles:
    """Observed latencies of one path over a sliding window."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    count: int

    def at(self, quantile: float) -> float:
        """The latency at ``quantile`` (0..1), interpolated between the known points."""
        points = ((0.5, self.p50_ms), (0.9, self.p90_ms), (0.99, self.p99_ms))
        if quantile <= 0.5:
            return self.p50_ms
        for (q0, v0), (q1, v1) in zip(points, points[1:], strict=False):
            if quantile <= q1:
                return v0 + (v1 - v0) * (quantile - q0) / (q1 - q0)
        return self.p99_ms


@dataclass(frozen=True)
class VmState:
    ready_replicas: int
    booting_replicas: int
    outstanding: int  # requests sent to replicas and not yet answered
    max_batch_size: int = 8
    desired_replicas: int = 0
    outstanding_per_replica: tuple[int, ...] = ()  # of the ready replicas
    boot_remaining_s: float = 0.0  # until the first booting replica is expected ready
    boot_s: float = 60.0  # how long a replica takes from request to ready (the scaling horizon)
    max_queue_delay_ms: float = 2.0  # batching delay the model servers wait for a fuller batch
    draining_replicas: int = 0


@dataclass(frozen=True)
class BurstState:
    """The function platform as the gateway sees it. ``None`` fields are unknown."""

    in_flight: int = 0  # burst requests being served
    warm_instances: int | None = None
    free_concurrency: int | None = None  # function instances that may still start now
    recent_cold_starts: int = 0  # over the collector's short window
    cold_start_ms: float = 1000.0
    memory_mb: int = 1024
    default_workers: int = 4


@dataclass(frozen=True)
class ModelStats:
    """What the gateway measured for one model."""

    arrival_rate_short_per_s: float = 0.0
    arrival_rate_long_per_s: float = 0.0
    # observed VM service time (ms) of one batch, by batch size: ((1, 21.0), (4, 30.5), ...)
    vm_service_ms_by_batch: tuple[tuple[int, float], ...] = ()
    vm_latency: LatencyQuantiles | None = None
    # VM latencies of requests that found their replica idle: one batch's service time and the
    # batching delay, no queueing (the service-time spread the VM prediction's tail uses)
    vm_service_latency: LatencyQuantiles | None = None
    burst_latency: LatencyQuantiles | None = None
    burst_predicted_ms: float | None = None  # from the plan's performance model when known
    # a burst request's price from its plan's cost model (compute, invocations and store
    # requests) when known: where tensors go through a store, its requests can outweigh the
    # compute (MobileNetV2 on a measured profile: 89 % of the price)
    burst_usd: float | None = None
    # observed over predicted VM latency, at the 99th percentile of recent answers: what the
    # queue model does not see (a loaded host, the model server's own overheads, the rows that
    # join a request's own batch); learnt per regime of the raw prediction (``vm_factor``),
    # which replaces the single factor; 1.0 and None unknown
    vm_prediction_factor: float = 1.0
    vm_prediction_factors: FactorTable | None = None
    slo_ms: float = 500.0
    # answers over the recent window and those that missed their SLO: the error budget
    # routing may spend (``routing.error_budget``); 0 unknown
    # observed over raw VM prediction at the error budget's quantile, by regime: the same raw
    # prediction calibrated at that quantile (``vm_factor.learn_table``); None unknown
    vm_budget_factors: FactorTable | None = None
    slo_answered: int = 0
    slo_missed: int = 0


@dataclass(frozen=True)
class QueueState:
    """The async queue (gateway/asyncq): jobs waiting, jobs being served, the oldest's wait."""

    depth: int = 0
    running: int = 0
    oldest_age_s: float = 0.0
    consumers: int | None = None  # jobs served at once (each waits for its answer); None unknown


@dataclass(frozen=True)
class LiveState:
    now_s: float
    vm: VmState
    burst_enabled: bool
    burst: BurstState = field(default_factory=BurstState)
    models: Mapping[str, ModelStats] = field(default_factory=dict)
    arrival_rate_short_per_s: float = 0.0  # all models
    arrival_rate_long_per_s: float = 0.0
    queue: QueueState = field(default_factory=QueueState)  # the async queue, when there is one

    def model(self, name: str) -> ModelStats:
        return self.models.get(name) or _NO_STATS


_NO_STATS = ModelStats()


@dataclass(frozen=True)
class RouteRequest:
    """What routing may look at: never the tensors, never an HTTP request."""

    tenant: str
    model: str
    batch_size: int
    slo_ms: float
    forced_route: str | None = None  # "vm" | "burst" from a tenant allowed to force it
    workers: int | None = None
    slo_percentile: float = 0.99  # the share of requests that must meet ``slo_ms``
    deadline_s: float | None = None  # async class: the answer may come this late (it may queue)
