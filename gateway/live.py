"""The gateway's live view: what it measured, turned into ``policies.state`` snapshots.

Dispatch reports arrivals and answers here (a few dict and deque operations each); ``snapshot``
builds a ``LiveState`` for routing and autoscaling. The pool's replica counts and queues are read
fresh every time; rates, latency quantiles and the burst estimate are recomputed at most every
``refresh_s`` so that ``route()`` stays in microseconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from burst.backend import BurstStats as BurstLiveStats  # what a backend may report
from policies.routing import burst_instances
from policies.state import (
    BurstState,
    LatencyQuantiles,
    LiveState,
    ModelStats,
    PathKind,
    QueueState,
    VmState,
)
from vmpool.batch_report import BatchReport
from vmpool.pool import ReplicaPool

from .batch_curve import BatchCurve
from .cold_start import ColdStartEstimate, warm_p50_ms
from .latency_window import LatencyWindow, RateCounter
from .slo_budget import SloBudget
from .vm_error import PredictionError


@runtime_checkable
class BurstLiveSource(Protocol):
    """Implemented by a burst backend that can report on its platform; optional."""

    def live_stats(self) -> BurstLiveStats: ...


@runtime_checkable
class BurstHealth(Protocol):
    """A burst backend that knows whether it can serve now (runtime up, circuit closed)."""

    def ready(self) -> bool: ...


_HEALTH_BY_TYPE: dict[type, bool] = {}  # a runtime Protocol check costs ~3.5 us; once a type


def burst_ready(burst: object | None) -> bool:
    if burst is None:
        return False
    kind = type(burst)
    health = _HEALTH_BY_TYPE.get(kind)
    if health is None:
        health = _HEALTH_BY_TYPE[kind] = isinstance(burst, BurstHealth)
    return burst.ready() if health else True  # type: ignore[attr-defined]


@dataclass
class _ModelView:
    slo_ms: float
    short: RateCounter
    long: RateCounter
    vm: LatencyWindow
    vm_idle: LatencyWindow  # requests that found their replica idle: service time, no queue
    burst: LatencyWindow  # warm burst requests only: a cold start is predicted separately
    batch_ms: BatchCurve  # service time by rows per batch, estimated from latencies
    # the same, from what replicas reported of each answer's batch: exact, so it wins
    reported_batch_ms: BatchCurve
    vm_error: PredictionError = field(default_factory=PredictionError)
    budget: SloBudget = field(default_factory=SloBudget)  # answers, misses: the error budget


class LiveCollector:
    def __init__(
        self,
        *,
        pool: ReplicaPool | None,
        burst: object | None,
        model_slos_ms: dict[str, float],
        clock: Callable[[], float] = time.monotonic,
        short_window_s: float = 10.0,
        long_window_s: float = 300.0,
        latency_window_s: float = 60.0,
        refresh_s: float = 0.25,
        burst_concurrency: int | None = None,
        keep_alive_s: float = 300.0,
        default_workers: int = 4,
        memory_mb: int = 1024,
        cold_start_ms: float = 1000.0,
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 2.0,
    ):
        self.pool, self.burst = pool, burst
        self._clock = clock
        self.refresh_s = refresh_s
        self.burst_concurrency = burst_concurrency
        self.keep_alive_s = keep_alive_s
        self.default_workers, self.memory_mb = default_workers, memory_mb
        self.cold_start_ms = cold_start_ms
        self.max_batch_size, self.max_queue_delay_ms = max_batch_size, max_queue_delay_ms
        self._models = {
            name: _ModelView(
                slo,
                RateCounter(short_window_s),
                RateCounter(long_window_s),
                LatencyWindow(latency_window_s),
                LatencyWindow(latency_window_s),
                LatencyWindow(latency_window_s),
                BatchCurve(latency_window_s),
                BatchCurve(latency_window_s),
            )
            for name, slo in model_slos_ms.items()
        }
        self._all_short, self._all_long = RateCounter(short_window_s), RateCounter(long_window_s)
        self._cold = RateCounter(short_window_s)
        self._burst_in_flight, self._burst_instances = 0, 1
        self._instances_seen: deque[tuple[float, int]] = deque()  # (t, instances busy at t)
        self._cached_at = -1e18
        self._cached: tuple[dict[str, ModelStats], BurstState, float, float] | None = None
        self.warm_functions_target = 0  # what the predictive scaler asked to keep warm
        self.queue = QueueState()  # the async queue, as its housekeeping last measured it
        self.prewarmed_instances = 0  # what the control loop's last prewarm brought up
        # learnt, bounded by evidence; the embedded runtime (the only one given a concurrency
        # here) starts its instances on this host's cores, so cold starts under way contend
        self._cold_start = ColdStartEstimate(latency_window_s, burst_concurrency is not None)
        self._boot_s = 0.0

    def now(self) -> float:
        """The clock the live view is kept in (the control loop ticks on it too)."""
        return self._clock()

    def use_budget(self, quantile: float, window_s: float) -> None:
        """Measure the error budget as the routing policy in force spends it (``slo_budget``)."""
        for view in self._models.values():
            view.budget.configure(quantile, window_s)

    # events from dispatch ----------------------------------------------------------------------

    def on_arrival(self, model: str) -> None:
        now = self._clock()
        view = self._models.get(model)
        if view is not None:
            view.short.add(now)
            view.long.add(now)
        self._all_short.add(now)
        self._all_long.add(now)

    def on_vm_answer(
        self,
        model: str,
        rows: int,
        latency_ms: float,
        queued_ahead: int,
        predicted_ms: float | None = None,
        path_ms: float | None = None,
        *,
        reported: BatchReport | None = None,
    ) -> None:
        """A VM answer, teaching the batch-time curve. A replica that ``reported`` the batch
        the request ran in (rows, service time) gives the curve exactly. Else it is estimated:
        the rows already queued on the replica rode in the same batches, ``ceil(rows / max
        batch)`` rounds of them (an overestimate when a batch was running on arrival: b(2)
        2.08 s for a true 1.2 s on the delay model). With the routing's prediction and the
        whole VM path's time (boot wait and retries included), it also teaches the
        prediction's error."""
        view = self._models.get(model)
        if view is None:
            return
        now = self._clock()
        view.vm_error.on_answer(now, predicted_ms, path_ms)
        view.budget.on_answer(now, path_ms if path_ms is not None else latency_ms, view.slo_ms)
        view.vm.add(now, latency_ms)
        if queued_ahead == 0:
            view.vm_idle.add(now, latency_ms)
        if reported is not None:
            view.reported_batch_ms.add(now, reported.rows, reported.service_ms)
            return
        total = queued_ahead + rows
        rounds = -(-total // self.max_batch_size)
        batch = min(total, self.max_batch_size)
        view.batch_ms.add(now, batch, latency_ms / rounds)

    def burst_started(self, workers: int) -> int:
        """A burst request sent; pass the token back to ``burst_finished``."""
        self._burst_in_flight += 1
        self._burst_instances = burst_instances(workers)  # warm once one answers, not before
        return self._cold_start.started(self._clock())

    def burst_finished(
        self, model: str, latency_ms, cold_starts: int, *, token=None, failed_after_ms=None
    ):
        """A burst answer or a failure: warm answers go to the latency window; cold-started
        ones and failures teach the cold start routing adds (``gateway.cold_start``)."""
        self._burst_in_flight -= 1
        now = self._clock()
        view = self._models.get(model)
        warm = view.burst.quantiles(now) if view is not None else None
        if view is not None and latency_ms is not None:  # (a failure is retried or answered)
            view.budget.on_answer(now, latency_ms, view.slo_ms)
        if view is not None and latency_ms is not None and not cold_starts:
            view.burst.add(now, latency_ms)
        cold_ms, warm_ms = latency_ms if cold_starts else None, warm.p50_ms if warm else 0.0
        done = self._cold_start.finished(
            now, token, cold_ms, warm_ms, failed_after_ms, answered=latency_ms is not None
        )
        if done:  # instances proven warm (a timed-out cold start left none behind)
            self._instances_seen.append((now, done * self._burst_instances))
        for _ in range(cold_starts):
            self._cold.add(now)

    def release_prewarmed(self, keep: int) -> None:
        """The warm pool shrinks to ``keep`` (no longer billed as held): the instances let go
        stay warm only as used ones do, for the keep-alive from now."""
        if self.prewarmed_instances > keep:
            self._instances_seen.append((self._clock(), self.prewarmed_instances))
            self.prewarmed_instances = keep

    def on_queue_stats(
        self, depth: int, running: int, oldest_age_s: float, consumers: int | None = None
    ) -> None:
        self.queue = QueueState(depth, running, oldest_age_s, consumers)

    # snapshots ---------------------------------------------------------------------------------

    def snapshot(self, fresh: bool = False) -> LiveState:
        now = self._clock()
        if fresh or self._cached is None or now - self._cached_at >= self.refresh_s:
            self._cached = self._refresh(now)
            self._cached_at = now
        models, burst, short, long = self._cached
        return LiveState(
            now,
            self._vm_state(),
            burst_ready(self.burst),
            _with_in_flight(burst, self._burst_in_flight),
            models,
            short,
            long,
            self.queue,
        )

    def _vm_state(self) -> VmState:
        pool = self.pool
        if pool is None:
            return VmState(0, 0, 0, self.max_batch_size)
        ready, booting = pool.view()
        per_replica = pool.outstanding_per_replica(ready)
        return VmState(
            len(ready),
            len(booting),
            pool.outstanding,
            self.max_batch_size,
            pool.desired,
            per_replica,
            pool.boot_remaining_s(booting) if booting else 0.0,
            self._boot_s,
            self.max_queue_delay_ms,
            len(pool.draining()),
        )

    def _refresh(self, now: float):
        self._boot_s = self.pool.expected_boot_s if self.pool is not None else 0.0
        live = self.burst.live_stats() if isinstance(self.burst, BurstLiveSource) else None
        predicted = live.predicted_ms if live else {}
        priced = live.predicted_usd if live else {}
        models = {
            name: ModelStats(
                arrival_rate_short_per_s=v.short.rate(now),
                arrival_rate_long_per_s=v.long.rate(now),
                vm_service_ms_by_batch=(v.reported_batch_ms or v.batch_ms).points(now),
                vm_latency=v.vm.quantiles(now),
                vm_service_latency=v.vm_idle.quantiles(now),
                burst_latency=v.burst.quantiles(now),
                burst_predicted_ms=predicted.get(name),
                burst_usd=priced.get(name),
                slo_ms=v.slo_ms,
                vm_prediction_factors=v.vm_error.table(now, v.slo_ms),
                **v.budget.stats(now, v.vm_error, v.slo_ms),
            )
            for name, v in self._models.items()
        }
        warm = live.warm_instances if live and live.warm_instances is not None else None
        warm = self._estimated_warm(now) if warm is None else warm
        starting = self._burst_in_flight * self._burst_instances - (warm or 0)  # cold, under way
        burst = BurstState(
            warm_instances=warm,
            free_concurrency=live.free_concurrency if live else self._estimated_free(),
            recent_cold_starts=round(self._cold.rate(now) * self._cold.window_s),
            cold_start_ms=self._cold_start.ms(
                now, self.cold_start_ms, warm_p50_ms(models), cold_under_way=starting
            ),
            memory_mb=self.memory_mb,
            default_workers=_plan_workers(live, self.default_workers),
        )
        return models, burst, self._all_short.rate(now), self._all_long.rate(now)

    def _estimated_warm(self, now: float) -> int | None:
        """Instances kept alive by recent use (the peak busy count within the keep-alive) or
        prewarmed by the control loop (counted once they are up, not when asked for)."""
        while self._instances_seen and self._instances_seen[0][0] < now - self.keep_alive_s:
            self._instances_seen.popleft()
        seen = max((n for _, n in self._instances_seen), default=0)
        return max(seen, self.prewarmed_instances)

    def _estimated_free(self) -> int | None:
        if self.burst_concurrency is None or self.burst is None:
            return None
        busy = self._burst_in_flight * burst_instances(self.default_workers)
        return max(self.burst_concurrency - busy, 0)

    def observed(self, model: str, path: PathKind) -> LatencyQuantiles | None:
        view = self._models.get(model)
        if view is None:
            return None
        window = view.vm if path == PathKind.VM else view.burst
        return window.quantiles(self._clock())


def _plan_workers(live: BurstLiveStats | None, configured: int) -> int:
    """The workers a burst request runs on: its plan's (the most of any model's), not the
    configured default, which a model that cannot split does not use (the simulator takes the
    plan's; with the default the predictive scaler priced a delay model's spills 4x)."""
    workers = getattr(live, "workers", None)
    return max(max(workers.values()), 1) if workers else configured


def _with_in_flight(burst: BurstState, in_flight: int) -> BurstState:
    if burst.in_flight == in_flight:
        return burst
    return BurstState(
        in_flight,
        burst.warm_instances,
        burst.free_concurrency,
        burst.recent_cold_starts,
        burst.cold_start_ms,
        burst.memory_mb,
        burst.default_workers,
    )
