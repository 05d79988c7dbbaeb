"""Helpers of the engine's hot path: frozen snapshots built cheaply, nearest-rank latency
quantiles, and the routing cache's key for policies known to read per-replica queues only
through one summary."""

from __future__ import annotations

import numpy as np

from policies.routing.slo_aware import burst_instances
from policies.state import BurstState, LatencyQuantiles, LiveState, VmState


def frozen(cls, **fields):
    """``cls(**fields)`` for a frozen dataclass without the per-field ``object.__setattr__`` of
    its ``__init__`` (a third of a snapshot's cost); the result is the same object. Defaults of
    fields not given are filled in; classes with ``__post_init__`` or slots go through
    ``__init__``."""
    spec = _FAST.get(cls)
    if spec is None:
        import dataclasses

        ok = not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
        defaults = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = None  # filled per object below
        spec = _FAST[cls] = (
            ok,
            defaults,
            {
                f.name: f.default_factory
                for f in dataclasses.fields(cls)
                if f.default_factory is not dataclasses.MISSING
            },
        )
    ok, defaults, factories = spec
    if not ok:
        return cls(**fields)
    obj = object.__new__(cls)
    d = obj.__dict__
    d.update(defaults)
    for name, factory in factories.items():
        if name not in fields:
            d[name] = factory()
    d.update(fields)
    return obj


_FAST: dict = {}


def quantiles(chunks: list[np.ndarray]) -> LatencyQuantiles | None:
    values = np.concatenate(chunks) if chunks else np.empty(0)
    n = values.size
    if not n:
        return None
    ks = [int(q * (n - 1)) for q in (0.5, 0.9, 0.99)]
    part = np.partition(values, ks)  # nearest-rank quantiles; np.percentile costs 5x more
    return LatencyQuantiles(float(part[ks[0]]), float(part[ks[1]]), float(part[ks[2]]), int(n))


class _PerReplica:
    """The fields of a ``VmState`` that ``vm_perf._queued_rows`` reads."""

    __slots__ = ("outstanding_per_replica", "outstanding", "ready_replicas")


def _slo_aware(routing) -> bool:
    from policies.routing.slo_aware import SloAware

    return type(routing) is SloAware


def predicts_vm(routing) -> bool:
    """Whether ``routing`` reads the learnt VM prediction factor (its VM predictions scale)."""
    return _slo_aware(routing)


def tick_signature(routing, slo_percentile: float = 0.99):
    """``stats -> key`` of what ``routing`` reads of a tick's state besides the per-request
    parts (queues, boots, functions: the cache key), or ``None`` to drop decisions every tick.

    SLO-aware routing reads the model's batch curve, latency quantiles, burst prediction and
    the learnt VM prediction factor (refreshed every few ticks), not the clock, the arrival rates or the desired replicas: its
    decisions stay valid across ticks until those change (~5x fewer policy calls).
    """
    if not _slo_aware(routing):
        return None

    def signature(stats) -> tuple:
        return (
            stats.vm_service_ms_by_batch,
            stats.vm_latency,
            getattr(stats, "vm_service_latency", None),
            stats.burst_latency,
            stats.burst_predicted_ms,
            stats.vm_prediction_factor,  # scales every VM prediction (policies.vm_perf)
            stats.vm_prediction_factors,  # by regime, when learnt (policies.vm_factor)
            stats.vm_budget_factors,  # at the error budget's quantile
            stats.slo_ms,
            routing.vm_quantile(stats, slo_percentile),  # the error budget's (not its counts)
        )

    return signature


def queue_summary(routing):
    """``per -> key`` for the routing cache, or ``None`` to key on the whole tuple.

    SLO-aware routing reads the per-replica queues only through ``vm_perf._queued_rows`` (the
    queue power-of-two choices would see), so tuples with the same summary get the same
    decision; keying on it cuts the policy's calls by ~3x on multi-replica days. Threshold
    routing reads them only summed (``vm.outstanding``, with the replica count). Exactness is
    checked in tests/ops/test_simulate.py and test_sim25_speed.py (runs keyed both ways).
    """
    from policies.routing.threshold import Threshold
    from policies.vm_perf import _queued_rows

    if type(routing) is Threshold:  # it reads the rows outstanding over the fleet, summed
        return sum
    if not _slo_aware(routing):
        return None
    view = _PerReplica()

    # the error budget may judge the VM at any quantile from its own up to p99, in steps of 0.01
    lowest = min(max(routing.budget_quantile, 0.0), 0.99)
    steps = range(round((0.99 - lowest) * 100) + 1)
    levels = tuple({lowest, *(round(lowest + k / 100, 2) for k in steps)})

    picks: dict[int, tuple[int, ...]] = {}  # replicas -> the ranks picked at those levels

    def ranks(n: int) -> tuple[int, ...]:
        view.outstanding_per_replica = per = tuple(range(n))  # each queue its own rank
        view.outstanding, view.ready_replicas = sum(per), n
        return tuple(sorted({int(_queued_rows(view, q)) for q in levels}))

    def summary(per: tuple):
        n = len(per)
        if len(levels) > 1 and n >= 3:  # (two replicas: every quantile picks the shorter)
            at = picks.get(n)
            if at is None:
                at = picks[n] = ranks(n)
            return tuple([per[i] for i in at])
        view.outstanding_per_replica = per
        view.outstanding, view.ready_replicas = sum(per), n
        return _queued_rows(view)

    return summary


def snapshot(self, now_s: float, tick_s: float, per: tuple | None = None, queue=None) -> LiveState:
    """The live state of the simulation ``self`` at ``now_s`` (its ``_snapshot`` method); its
    parts are shared between equal snapshots of a tick (they are frozen, so sharing is safe
    and saves most of a cache miss's cost)."""
    vm, fn, p = self.vm, self.fn, self.p
    if per is None:  # outstanding rows per ready replica, sorted (order carries nothing)
        per = tuple(sorted(r.outstanding(now_s) for r in vm.ready))
    waiting = sum(len(r.queue) for r in vm.booting)
    boot_left = round(max(vm.booting[0].ready_s - now_s, 0.0), 1) if vm.booting else 0.0
    outstanding = sum(per) + waiting + sum(r.outstanding(now_s) for r in vm.draining)
    vm_key = (per, len(vm.booting), outstanding, boot_left, len(vm.draining))
    vm_state = self._parts.get(vm_key)
    if vm_state is None:
        vm_state = self._parts[vm_key] = frozen(
            VmState,
            ready_replicas=len(per),
            booting_replicas=len(vm.booting),
            outstanding=outstanding,
            max_batch_size=p.vm_max_batch_size,
            desired_replicas=self.desired,
            outstanding_per_replica=per,
            boot_remaining_s=boot_left,
            boot_s=p.vm_boot_s,
            max_queue_delay_ms=p.vm_max_queue_delay_ms,
            draining_replicas=len(vm.draining),
        )
    burst_key = (len(fn.busy), len(fn.request_ends), fn.warm_groups(), fn.recent_cold)
    burst = self._parts.get(burst_key)
    if burst is None:
        # report instance groups in the units routing counts per burst request, so "a
        # warm group is idle" reads the same on both sides
        k = burst_instances(p.burst_workers)
        burst = self._parts[burst_key] = frozen(
            BurstState,
            in_flight=len(fn.request_ends),  # requests, as the gateway counts them
            warm_instances=fn.warm_groups() * k,
            free_concurrency=(fn.cap_groups - len(fn.busy)) * k,
            recent_cold_starts=fn.recent_cold,
            cold_start_ms=p.cold_start_ms,
            memory_mb=p.burst_memory_mb,
            default_workers=p.burst_workers,
        )
    return frozen(
        LiveState,
        now_s=tick_s,
        vm=vm_state,
        burst_enabled=True,
        burst=burst,
        models=self._models,
        arrival_rate_short_per_s=self._stats.arrival_rate_short_per_s,
        arrival_rate_long_per_s=self._stats.arrival_rate_long_per_s,
        **({"queue": queue} if queue is not None else {}),
    )
