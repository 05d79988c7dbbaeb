"""Spill to functions when VM replicas are missing or each already holds a full queue."""

from __future__ import annotations

from dataclasses import dataclass

from ..config_table import MAX_INT
from ..state import LiveState, RouteRequest
from .base import Decision, Reason, Route, forced, vm_decision


@dataclass(frozen=True)
class Threshold:
    spill_outstanding_per_replica: int = 16
    name: str = "threshold"

    def __post_init__(self) -> None:
        # a string was taken from PUT /admin/policy and every request then failed comparing it
        value = self.spill_outstanding_per_replica
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
            raise ValueError(
                f"routing parameter spill_outstanding_per_replica must be an integer in "
                f"1..{MAX_INT}, got {value!r}"
            )

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        decision = forced(request, state)
        if decision:
            return decision
        vm = state.vm
        if (
            vm.ready_replicas > 0
            and vm.outstanding < vm.ready_replicas * self.spill_outstanding_per_replica
        ):
            return Decision(Route.VM, Reason.VM_HAS_CAPACITY)
        if state.burst_enabled:
            why = Reason.NO_VM_READY if vm.ready_replicas == 0 else Reason.VM_OVER_THRESHOLD
            return Decision(Route.BURST, why, request.workers)
        # no functions: queue on the VMs (or wait for a booting one) rather than refuse
        return vm_decision(state, Reason.VM_OVER_THRESHOLD)
