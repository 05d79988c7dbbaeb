"""An optional record of the control loop, for comparing the live autoscaler with the simulated
one: one JSON line per tick with what the autoscaler read of the snapshot and what it decided.

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
from policies.state import LiveState, ModelStats

ENV = "TIDEGATE_CONTROL_LOG"
log = logging.getLogger("tidegate.control")


def tick_record(state: LiveState, decision: ScaleDecision) -> dict:
    """What a tick's autoscaler read (the fields the scalers use) and what it decided."""
    vm, burst = state.vm, state.burst
    return {
        "now_s": round(state.now_s, 4),
        "ready": vm.ready_replicas,
        "booting": vm.booting_replicas,
        "draining": vm.draining_replicas,
        "desired": vm.desired_replicas,
        "vm_outstanding": vm.outstanding,
        "per_replica": list(vm.outstanding_per_replica),
        "burst_in_flight": burst.in_flight,
        "arrival_rate_per_s": round(state.arrival_rate_short_per_s, 4),
        "boot_s": round(vm.boot_s, 3),
        "max_batch": vm.max_batch_size,
        "arrival_rate_long_per_s": round(state.arrival_rate_long_per_s, 4),
        "cold_start_ms": round(burst.cold_start_ms, 1),
        "models": {name: _model_record(stats) for name, stats in state.models.items()},
        "replicas": decision.replicas,
        "reason": decision.reason,
        "warm_functions": decision.warm_functions,
    }


def _model_record(stats: ModelStats) -> dict:
    """A model's part of a tick: its rates and the batch-time curve the fleet is sized by (the
    predictive scaler's capacity), so a live tick can be set beside a simulated one."""
    vm, fn = stats.vm_latency, stats.burst_latency
    return {
        "rate_short": round(stats.arrival_rate_short_per_s, 4),
        "rate_long": round(stats.arrival_rate_long_per_s, 4),
        "batch_ms": [[b, round(ms, 3)] for b, ms in stats.vm_service_ms_by_batch],
        "vm_p99_ms": None if vm is None else round(vm.p99_ms, 2),
        "burst_p50_ms": None if fn is None else round(fn.p50_ms, 2),
        "burst_count": 0 if fn is None else fn.count,
        "burst_predicted_ms": stats.burst_predicted_ms,
        "burst_usd": stats.burst_usd,
        "answered": stats.slo_answered,
        "missed": stats.slo_missed,
    }


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
