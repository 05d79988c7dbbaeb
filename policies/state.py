"""Live-state snapshots that routing and autoscaling decide from (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass(frozen=True)
class VmState:
    ready_replicas: int
    booting_replicas: int
    outstanding: int  # requests sent to replicas and not yet answered
    max_batch_size: int = 8


@dataclass(frozen=True)
class LiveState:
    now_s: float
    vm: VmState
    burst_enabled: bool


@dataclass(frozen=True)
class RouteRequest:
    """What routing may look at: never the tensors, never an HTTP request."""

    tenant: str
    model: str
    batch_size: int
    slo_ms: float
    forced_route: str | None = None  # "vm" | "burst" from a tenant allowed to force it
    workers: int | None = None
