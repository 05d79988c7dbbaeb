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
from policies.state import LiveState

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
        "replicas": decision.replicas,
        "reason": decision.reason,
        "warm_functions": decision.warm_functions,
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
