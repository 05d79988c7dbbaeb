"""The routing seam: ``route(request, live_state) -> Decision``, and what every policy shares."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..state import LiveState, RouteRequest


class Route(str, Enum):
    VM = "vm"
    BURST = "burst"
    REJECT = "reject"
    QUEUE = "queue"  # wait in the async queue for idle VMs (routing/async_class.py)


class Reason(str, Enum):
    """Why a request went where it went (a metrics label and a ledger column)."""

    FORCED = "forced"
    VM_ONLY = "vm-only"
    BURST_ONLY = "burst-only"
    VM_HAS_CAPACITY = "vm-has-capacity"
    VM_OVER_THRESHOLD = "vm-over-threshold"
    VM_BOOTING = "vm-booting"  # waits for the first replica to be ready
    NO_VM_READY = "no-vm-ready"
    BURST_DISABLED = "burst-disabled"
    BURST_FULL = "burst-full"  # no free function concurrency
    VM_MEETS_SLO = "vm-meets-slo"
    BURST_MEETS_SLO = "burst-meets-slo"
    FASTEST_VM = "fastest-vm"  # no path meets the SLO
    FASTEST_BURST = "fastest-burst"
    VM_SATURATED = "vm-saturated"  # the VM's queue misses the SLO even at the median
    # the replica picked for it answers past the SLO (other models' batches in its way: on a
    # fleet of several models, routing/replica_choice.py) and functions meet it
    REPLICA_MISSES = "replica-misses"
    NO_PATH = "no-path"
    QUEUE_MEETS_DEADLINE = "queue-meets-deadline"


# What a client reads in the 503 body when its request cannot be served.
REJECT_MESSAGES = {
    Reason.NO_VM_READY: "no VM replica is ready or booting",
    Reason.BURST_DISABLED: "the burst path is disabled",
    Reason.BURST_FULL: "the burst path has no free function concurrency",
    Reason.NO_PATH: "no path can serve the request now",
}


@dataclass(frozen=True)
class Decision:
    route: Route
    reason: Reason
    workers: int | None = None
    predicted_ms: float | None = None  # the chosen path's prediction at the SLO's percentile
    retry_after_s: float = 1.0  # for REJECT: when trying again may succeed

    @property
    def message(self) -> str:
        return REJECT_MESSAGES.get(self.reason, self.reason.value)


class RoutingPolicy(Protocol):
    name: str

    def route(self, request: RouteRequest, state: LiveState) -> Decision: ...


def vm_can_take(state: LiveState) -> bool:
    """A VM request can be served now or once a booting replica is ready (it waits)."""
    return state.vm.ready_replicas > 0 or state.vm.booting_replicas > 0


def vm_decision(state: LiveState, reason: Reason) -> Decision:
    if state.vm.ready_replicas == 0:
        if state.vm.booting_replicas == 0:
            return Decision(Route.REJECT, Reason.NO_VM_READY)
        return Decision(
            Route.VM, Reason.VM_BOOTING, retry_after_s=max(state.vm.boot_remaining_s, 1.0)
        )
    return Decision(Route.VM, reason)


def forced(request: RouteRequest, state: LiveState) -> Decision | None:
    """Honour ``X-Tidegate-Route`` unless the path cannot serve at all."""
    if request.forced_route == Route.BURST.value:
        if not state.burst_enabled:
            return Decision(Route.REJECT, Reason.BURST_DISABLED)
        return Decision(Route.BURST, Reason.FORCED, request.workers)
    if request.forced_route == Route.VM.value:
        return vm_decision(state, Reason.FORCED)
    return None
