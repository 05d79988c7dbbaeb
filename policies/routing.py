"""Where a request goes: ``route(request, live_state) -> Decision``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .state import LiveState, RouteRequest


class Route(str, Enum):
    VM = "vm"
    BURST = "burst"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    route: Route
    reason: str
    workers: int | None = None


class RoutingPolicy(Protocol):
    name: str

    def route(self, request: RouteRequest, state: LiveState) -> Decision: ...


def _forced(request: RouteRequest, state: LiveState) -> Decision | None:
    if request.forced_route == Route.BURST.value:
        if not state.burst_enabled:
            return Decision(Route.REJECT, "burst path is disabled")
        return Decision(Route.BURST, "forced by request", request.workers)
    if request.forced_route == Route.VM.value:
        if state.vm.ready_replicas == 0:
            return Decision(Route.REJECT, "no VM replica is ready")
        return Decision(Route.VM, "forced by request")
    return None


@dataclass(frozen=True)
class VmOnly:
    name: str = "vm-only"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        forced = _forced(request, state)
        if forced:
            return forced
        if state.vm.ready_replicas == 0:
            return Decision(Route.REJECT, "no VM replica is ready")
        return Decision(Route.VM, "vm-only policy")


@dataclass(frozen=True)
class BurstOnly:
    name: str = "burst-only"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        forced = _forced(request, state)
        if forced:
            return forced
        if not state.burst_enabled:
            return Decision(Route.REJECT, "burst path is disabled")
        return Decision(Route.BURST, "burst-only policy", request.workers)


@dataclass(frozen=True)
class Threshold:
    """Spill to functions when VM replicas are missing or each already holds a full batch queue."""

    spill_outstanding_per_replica: int = 16
    name: str = "threshold"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        forced = _forced(request, state)
        if forced:
            return forced
        vm = state.vm
        if vm.ready_replicas > 0 and vm.outstanding < vm.ready_replicas * self.spill_outstanding_per_replica:
            return Decision(Route.VM, "vm has capacity")
        if state.burst_enabled:
            why = "no VM replica is ready" if vm.ready_replicas == 0 else "vm queue over threshold"
            return Decision(Route.BURST, why, request.workers)
        if vm.ready_replicas > 0:
            return Decision(Route.VM, "vm over threshold, burst disabled")
        return Decision(Route.REJECT, "no VM replica is ready and burst is disabled")


POLICIES = {"vm-only": VmOnly, "burst-only": BurstOnly, "threshold": Threshold}


def make_policy(name: str, **params) -> RoutingPolicy:
    try:
        return POLICIES[name](**params)
    except KeyError:
        raise ValueError(f"unknown routing policy {name!r}; known: {', '.join(POLICIES)}") from None
