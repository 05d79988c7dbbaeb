"""The autoscaling seam: ``Autoscaler.desired(state) -> int``, called once per control tick.

Autoscalers keep their own short history (windows, cooldowns) keyed by ``state.now_s``, so the
gateway and the simulator drive the very same objects with their own clocks.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from ..state import LiveState

GATEWAY_MS = 1.5  # the gateway's own time on every answer (routing's ``DEFAULT_GATEWAY_MS``)


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    reason: str
    warm_functions: int = 0  # function instances to keep warm (predictive scaler only)
    warm_cost_usd_per_s: float = 0.0  # what keeping them warm costs


class Autoscaler(Protocol):
    name: str
    min_replicas: int
    max_replicas: int

    def decide(self, state: LiveState) -> ScaleDecision: ...

    def desired(self, state: LiveState) -> int: ...


class ScalerBase:
    """min/max clamping and ``desired`` for every scaler."""

    name = "base"

    def __init__(self, min_replicas: int = 0, max_replicas: int = 8):
        if min_replicas < 0 or max_replicas < max(min_replicas, 1):
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got {min_replicas}..{max_replicas}"
            )
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas

    def clamp(self, replicas: float) -> int:
        return int(min(max(math.ceil(replicas - 1e-9), self.min_replicas), self.max_replicas))

    def desired(self, state: LiveState) -> int:
        return self.decide(state).replicas

    def decide(self, state: LiveState) -> ScaleDecision:  # pragma: no cover - abstract
        raise NotImplementedError


def in_flight(state: LiveState) -> int:
    """Demand in requests: queued or running on the VMs plus those spilled to functions."""
    return state.vm.outstanding + state.burst.in_flight


def functions_meet_slo(
    state: LiveState, quantile: float = 0.99, min_count: int = 20, gateway_ms: float = GATEWAY_MS
) -> bool:
    """Whether every model's burst path answers within its SLO at ``quantile``: as observed
    (``min_count`` answers or more), else as its plan predicts, plus the gateway's own time
    (which neither holds); False while neither is known."""
    if not state.models:
        return False
    for stats in state.models.values():
        seen = stats.burst_latency
        tail = (
            seen.at(quantile) if seen is not None and seen.count >= min_count else None
        ) or stats.burst_predicted_ms
        if tail is None or tail + gateway_ms > stats.slo_ms:
            return False
    return True


def current_replicas(state: LiveState) -> int:
    return max(state.vm.desired_replicas, state.vm.ready_replicas + state.vm.booting_replicas)


class Window:
    """Time-stamped samples over the last ``span_s`` seconds, with their mean."""

    def __init__(self, span_s: float):
        self.span_s = span_s
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, now_s: float, value: float) -> None:
        self._samples.append((now_s, value))
        self._sum += value
        while self._samples and self._samples[0][0] <= now_s - self.span_s:
            self._sum -= self._samples.popleft()[1]

    def mean(self) -> float:
        return self._sum / len(self._samples) if self._samples else 0.0

    def values(self) -> list[float]:
        return [v for _, v in self._samples]

    def __len__(self) -> int:
        return len(self._samples)
