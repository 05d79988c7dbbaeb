"""The fixed policies: everything to VMs, everything to functions."""

from __future__ import annotations

from dataclasses import dataclass

from ..state import LiveState, RouteRequest
from .base import Decision, Reason, Route, forced, vm_decision


@dataclass(frozen=True)
class VmOnly:
    name: str = "vm-only"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        return forced(request, state) or vm_decision(state, Reason.VM_ONLY)


@dataclass(frozen=True)
class BurstOnly:
    name: str = "burst-only"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        decision = forced(request, state)
        if decision:
            return decision
        if not state.burst_enabled:
            return Decision(Route.REJECT, Reason.BURST_DISABLED)
        return Decision(Route.BURST, Reason.BURST_ONLY, request.workers)
