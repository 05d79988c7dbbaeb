"""The simulation's burst path: a spill served by the function pool (``functions.py``), or
refused past the gateway's waiting bound, and its answer's latency and bill recorded."""

from __future__ import annotations

import math

PATH_BURST, PATH_REJECT = 1, 2


def burst(sim, i: int, t: float, ten: int) -> bool:  # False: refused (503), as live
    fn = sim.fn
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


def late(sim) -> None:
    """Answers a later cold start pushed back: their latency and bill grow. (The per-tick
    counts the policies read took them at their first latency, as the gateway's collector
    sees an answer only when it comes: a start that slowed is seen as in flight longer.)"""
    for i, latency_ms, billed_ms in sim.fn.late:
        sim.lat[i] += latency_ms
        sim.fn_billed_by_tenant[sim.tenant_of[i]] += billed_ms
    sim.fn.late.clear()
