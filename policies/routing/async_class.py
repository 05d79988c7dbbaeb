"""The async SLO class: a request with a deadline may wait in the durable queue for idle VMs
instead of taking a path now (and spilling to functions), when the queue is predicted to serve
it in time. ``QueueFirst`` wraps any routing policy; what it does not queue, the inner decides.

The queue drains at the VM capacity that interactive traffic leaves over: replicas (ready and
booting) times one replica's rows per second, less the long-window arrival rate, and never less
than ``min_drain_share`` of the capacity (jobs near their deadline are served even without idle
VMs: ``serve_now``), and no faster than the queue's consumers take jobs (one each, a batch
of one's service time at least). A request queues when the jobs ahead of it, plus itself, drain within
``deadline_share`` of its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..state import LiveState, RouteRequest
from ..vm_perf import predict_vm_ms, replica_capacity_per_s
from .base import Decision, Reason, Route, RoutingPolicy


def drain_rate_per_s(state: LiveState, model: str, min_drain_share: float = 0.1) -> float:
    """Jobs per second the VMs are predicted to take from the queue (0: no VM at all), and no
    more than the consumers take: each serves one job at a time and waits for its answer, at
    least a batch of one's service time (VGG-16: two consumers drain ~28 jobs/s, where the
    fleet's spare at full batches was taken for several times that)."""
    replicas = state.vm.ready_replicas + state.vm.booting_replicas
    if replicas == 0:
        return 0.0
    stats = state.model(model)
    capacity = replicas * replica_capacity_per_s(stats, state.vm.max_batch_size)
    rate = max(capacity - state.arrival_rate_long_per_s, min_drain_share * capacity)
    if state.queue.consumers is not None:
        one_job_s = predict_vm_ms(state.vm, stats, 1, quantile=0.5) / 1e3
        rate = min(rate, state.queue.consumers / one_job_s)
    return rate


def predicted_queue_wait_s(state: LiveState, model: str, min_drain_share: float = 0.1) -> float:
    """Until a job queued now is answered: the jobs ahead of it and itself, at the drain rate."""
    rate = drain_rate_per_s(state, model, min_drain_share)
    if rate <= 0.0:
        return math.inf
    wait_s = (state.queue.depth + state.queue.running + 1) / rate
    # with only booting replicas nothing drains until the first is up
    return wait_s + (state.vm.boot_remaining_s if state.vm.ready_replicas == 0 else 0.0)


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
