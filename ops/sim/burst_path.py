"""The simulation's burst path: a spill served by the function pool (``functions.py``), or
refused past the gateway's waiting bound, and its answer's latency and bill recorded."""

from __future__ import annotations

import math
from bisect import bisect_left

PATH_BURST, PATH_REJECT = 1, 2
# how often (simulated s) the host's other work is read again while spills come (its rate: over
# the last RATE_WINDOW_S of arrivals)
HOST_EVERY_S, RATE_WINDOW_S = 0.1, 1.0


def burst(sim, i: int, t: float, ten: int) -> bool:  # False: refused (503), as live
    fn = sim.fn
    if fn.host_work and t - fn.host_seen_s >= HOST_EVERY_S:
        host_work(sim, i, t)
    budget_ms = sim.requests[ten].slo_ms - sim.vm.overhead_ms
    served = fn.serve(t, budget_ms, i)
    if served is None:
        sim.lat[i] = math.inf
        sim.path[i] = PATH_REJECT
        sim.rejected += 1
        return False
    latency_ms, billed, cold = served
    if cold and fn.late:  # its start shares the host's cores: answers given before come later
        late(sim)
    sim.lat[i] = latency_ms + sim.vm.overhead_ms
    sim._tick_slo[0] += 1
    sim._tick_slo[1] += sim.lat[i] > sim.requests[ten].slo_ms
    sim.path[i] = PATH_BURST
    sim.fn_billed_by_tenant[ten] += billed
    sim.fn_requests_by_tenant[ten] += 1
    if not cold:  # as the gateway's collector: routing adds a cold start where one is due
        sim._tick_burst.append(latency_ms)
    return True


def host_work(sim, i: int, t: float) -> None:
    """The cores the host's other work keeps busy at ``t``: the gateway's (and the bench's
    load generator's) CPU per request at the arrival rate, and the VM replicas serving a batch
    (the embedded deployment's local VMs share the host). The warm runs' CPU and the cold
    starts share the rest (``FunctionPool.share_host``)."""
    p = sim.p
    rate = (i - bisect_left(sim.arr, t - RATE_WINDOW_S, 0, i)) / RATE_WINDOW_S
    busy = p.host_base_cores + p.host_cpu_ms_per_request * rate / 1000.0
    if p.vm_replica_cores > 0:
        busy += p.vm_replica_cores * sim.vm.serving(t)
    sim.fn.share_host(t, busy, RATE_WINDOW_S)
    if sim.fn.late:
        late(sim)


def late(sim) -> None:
    """Answers a later cold start pushed back: their latency and bill grow. (The per-tick
    counts the policies read took them at their first latency, as the gateway's collector
    sees an answer only when it comes: a start that slowed is seen as in flight longer.)"""
    for i, latency_ms, billed_ms in sim.fn.late:
        sim.lat[i] += latency_ms
        sim.fn_billed_by_tenant[sim.tenant_of[i]] += billed_ms
    sim.fn.late.clear()
