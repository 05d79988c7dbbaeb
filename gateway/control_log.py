"""An optional record of the control loop, for comparing the live autoscaler with the simulated
one: one JSON line per tick with what the autoscaler read of the snapshot and what it decided
(``state_of_record`` reads a line back into the snapshot).

Off unless ``TIDEGATE_CONTROL_LOG`` names a file (appended to, line-buffered: a crash loses at
most the line being written). ``ops/bench/sim_vs_real_ticks.py`` replays such a file through a
fresh scaler and sets it beside the simulated ticks, recorded with the same ``tick_record``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from policies.autoscaling import ScaleDecision
from policies.state import BurstState, LatencyQuantiles, LiveState, ModelStats, VmState

ENV = "TIDEGATE_CONTROL_LOG"
log = logging.getLogger("tidegate.control")


def tick_record(state: LiveState, decision: ScaleDecision) -> dict:
    """What a tick's autoscaler read and what it decided: every field the scalers read, at full
    precision, so ``state_of_record`` gives the predictive scaler the state it decided on (but
    the VM prediction's learnt factors, which it reads only for the spill VM's latency)."""
    vm, burst = state.vm, state.burst
    return {
        "now_s": state.now_s,
        "ready": vm.ready_replicas,
        "booting": vm.booting_replicas,
        "draining": vm.draining_replicas,
        "desired": vm.desired_replicas,
        "vm_outstanding": vm.outstanding,
        "per_replica": list(vm.outstanding_per_replica),
        "boot_remaining_s": vm.boot_remaining_s,
        "max_queue_delay_ms": vm.max_queue_delay_ms,
        "burst_in_flight": burst.in_flight,
        "arrival_rate_per_s": state.arrival_rate_short_per_s,
        "boot_s": vm.boot_s,
        "max_batch": vm.max_batch_size,
        "arrival_rate_long_per_s": state.arrival_rate_long_per_s,
        "burst": {
            "warm_instances": burst.warm_instances,
            "free_concurrency": burst.free_concurrency,
            "recent_cold_starts": burst.recent_cold_starts,
            "cold_start_ms": burst.cold_start_ms,
            "memory_mb": burst.memory_mb,
            "default_workers": burst.default_workers,
        },
        "models": {name: _model_record(stats) for name, stats in state.models.items()},
        "replicas": decision.replicas,
        "reason": decision.reason,
        "warm_functions": decision.warm_functions,
    }


def _model_record(stats: ModelStats) -> dict:
    """A model's part of a tick: its rates, the batch-time curve the fleet is sized by, its
    paths' latencies and prices, the error budget's counts."""
    return {
        "rate_short": stats.arrival_rate_short_per_s,
        "rate_long": stats.arrival_rate_long_per_s,
        "batch_ms": [list(point) for point in stats.vm_service_ms_by_batch],
        "vm_ms": _quantiles(stats.vm_latency),
        "vm_idle_ms": _quantiles(stats.vm_service_latency),
        "burst_ms": _quantiles(stats.burst_latency),
        "burst_predicted_ms": stats.burst_predicted_ms,
        "burst_usd": stats.burst_usd,
        "slo_ms": stats.slo_ms,
        "answered": stats.slo_answered,
        "missed": stats.slo_missed,
    }


def _quantiles(q: LatencyQuantiles | None) -> list | None:
    return None if q is None else [float(q.p50_ms), float(q.p90_ms), float(q.p99_ms), int(q.count)]


def state_of_record(record: dict) -> LiveState:
    """The snapshot a ``tick_record`` describes (its VM prediction factors left unknown)."""
    r = record
    vm = VmState(
        r["ready"],
        r["booting"],
        r["vm_outstanding"],
        r["max_batch"],
        r["desired"],
        tuple(r["per_replica"]),
        r["boot_remaining_s"],
        r["boot_s"],
        r["max_queue_delay_ms"],
        r["draining"],
    )
    burst = BurstState(in_flight=r["burst_in_flight"], **r["burst"])
    models = {name: _model_stats(m) for name, m in r["models"].items()}
    rates = r["arrival_rate_per_s"], r["arrival_rate_long_per_s"]
    return LiveState(r["now_s"], vm, True, burst, models, *rates)


def _model_stats(m: dict) -> ModelStats:
    def quantiles(key: str) -> LatencyQuantiles | None:
        q = m[key]
        return None if q is None else LatencyQuantiles(*q[:3], int(q[3]))

    return ModelStats(
        arrival_rate_short_per_s=m["rate_short"],
        arrival_rate_long_per_s=m["rate_long"],
        vm_service_ms_by_batch=tuple((int(b), ms) for b, ms in m["batch_ms"]),
        vm_latency=quantiles("vm_ms"),
        vm_service_latency=quantiles("vm_idle_ms"),
        burst_latency=quantiles("burst_ms"),
        burst_predicted_ms=m["burst_predicted_ms"],
        burst_usd=m["burst_usd"],
        slo_ms=m["slo_ms"],
        slo_answered=m["answered"],
        slo_missed=m["missed"],
    )


class ControlLog:
    """Appends ``tick_record`` lines to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")

    def write(self, state: LiveState, decision: ScaleDecision) -> None:
        self._file.write(json.dumps(tick_record(state, decision)) + "\n")

    def close(self) -> None:
        self._file.close()

    @classmethod
    def from_env(cls) -> ControlLog | None:
        """The log ``TIDEGATE_CONTROL_LOG`` asks for, or None; a path that cannot be opened is
        said once (the gateway serves without the record rather than not at all)."""
        path = os.environ.get(ENV)
        if not path:
            return None
        try:
            return cls(path)
        except OSError as exc:
            log.error("%s=%s: cannot write the control-loop record (%s)", ENV, path, exc)
            return None


def read_records(path: str | Path) -> list[dict]:
    """The records of a control log, in order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
