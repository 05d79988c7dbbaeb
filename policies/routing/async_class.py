"""The async SLO class: a request with a deadline may wait in the durable queue for idle VMs
instead of taking a path now (and spilling to functions), when the queue is predicted to serve
it in time. ``QueueFirst`` wraps any routing policy; what it does not queue, the inner decides.

The queue drains at the VM capacity that interactive traffic leaves over: replicas (ready and
booting) times one replica's rows per second, less the long-window arrival rate, and never less
than ``min_drain_share`` of the capacity (jobs near their deadline are served even without idle
VMs: ``serve_now``). A request queues when the jobs ahead of it, plus itself, drain within
``deadline_share`` of its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..state import LiveState, RouteRequest
from ..vm_perf import replica_capacity_per_s
from .base import Decision, Reason, Route, RoutingPolicy


def drain_rate_per_s(state: LiveState, model: str, min_drain_share: float = 0.1) -> float:
    """Jobs per second the VMs are predicted to take from the queue (0: no VM at all)."""
    replicas = state.vm.ready_replicas + state.vm.booting_replicas
    if replicas == 0:
        return 0.0
    capacity = replicas * replica_capacity_per_s(state.model(model), state.vm.max_batch_size)
    return max(capacity - state.arrival_rate_long_per_s, min_drain_share * capacity)


def predicted_queue_wait_s(state: LiveState, model: str, min_drain_share: float = 0.1) -> float:
    """Until a job queued now is answered: the jobs ahead of it and itself, at the drain rate."""
    rate = drain_rate_per_s(state, model, min_drain_share)
    if rate <= 0.0:
        return math.inf
    return (state.queue.depth + state.queue.running + 1) / rate


def serve_now(age_s: float, deadline_s: float, urgent_fraction: float) -> bool:
    """A queued job past ``urgent_fraction`` of its deadline no longer waits for idle VMs."""
    return age_s >= urgent_fraction * deadline_s


@dataclass(frozen=True)
class QueueFirst:
    inner: RoutingPolicy
    deadline_share: float = 0.5  # the predicted wait may use this share of the deadline
    min_drain_share: float = 0.1
    # what a queued job pays besides the drain: its durable write, a consumer's pick-up and
    # the answer's record (a deadline shorter than this is never worth queueing for)
    pickup_s: float = 0.5
    name: str = "queue-first"

    def route(self, request: RouteRequest, state: LiveState) -> Decision:
        if request.deadline_s is None or request.forced_route is not None:
            return self.inner.route(request, state)
        wait_s = self.pickup_s + predicted_queue_wait_s(state, request.model, self.min_drain_share)
        if wait_s <= self.deadline_share * request.deadline_s:
            return Decision(Route.QUEUE, Reason.QUEUE_MEETS_DEADLINE, predicted_ms=wait_s * 1e3)
        return self.inner.route(request, state)
