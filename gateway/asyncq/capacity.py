"""When an async consumer may take a job: interactive requests have the VMs first.

A consumer takes a job only while (a) the rows on the ready replicas, counting the jobs other
consumers have claimed but not yet handed to the pool, stay under ``slots_per_replica`` each,
and (b) an interactive request arriving after that job would still be predicted to meet the
tightest interactive SLO on the VMs (while interactive requests are on the VMs or were lately) (the same prediction slo-aware routing makes, so async
work never pushes an interactive request onto a cold function).

Both are counted before the first ``await`` of a take: the check used to read only
``pool.outstanding``, which a job joins once the pool sends it, so 16 consumers polling
together could all pass it at once and put 16 async rows on one replica at the step's onset
(async_step: interactive calls behind two full batches, predicted to miss, spilled cold).
"""

from __future__ import annotations

import dataclasses
import math
import time

from policies.routing.slo_aware import DEFAULT_SLO_MARGIN, path_budget_ms
from policies.state import LiveState, VmState
from policies.vm_perf import predict_vm_ms

from .config import AsyncQueueSettings

REFRESH_S = 0.02  # the interactive-room figure is recomputed at most this often
# interactive requests seen on the VMs this recently: the next one is protected even while
# none is in flight (async_step: slots filled in a gap between interactive requests made the
# next one predicted to miss, and it spilled to a cold function)
INTERACTIVE_MEMORY_S = 10.0


def with_rows(vm: VmState, extra_rows: int) -> VmState:
    """``vm`` with ``extra_rows`` more rows, each on the least loaded ready replica (where the
    pool's power-of-two choice tends to put them)."""
    per = sorted(vm.outstanding_per_replica) or [vm.outstanding]
    for _ in range(extra_rows):
        per[0] += 1
        per.sort()
    return dataclasses.replace(
        vm, outstanding=vm.outstanding + extra_rows, outstanding_per_replica=tuple(per)
    )


def interactive_room(
    state: LiveState, slo_ms: dict[str, float], max_rows: int, quantile: float = 0.99
) -> int:
    """How many more async rows the VMs take before an interactive request of one row, on any
    model with an SLO in ``slo_ms``, is predicted to miss its SLO (within routing's margin)."""
    idle = dataclasses.replace(
        state.vm, outstanding=0, outstanding_per_replica=(0,) * state.vm.ready_replicas
    )
    budgets = []
    for model, model_slo_ms in slo_ms.items():
        stats, budget_ms = state.model(model), path_budget_ms(model_slo_ms, DEFAULT_SLO_MARGIN)
        # a model that misses on an idle replica is not something async work makes worse
        if math.isfinite(budget_ms) and predict_vm_ms(idle, stats, 1, quantile) <= budget_ms:
            budgets.append((stats, budget_ms))
    room = 0
    while room < max_rows:
        vm = with_rows(state.vm, room + 1)
        if any(predict_vm_ms(vm, stats, 1, quantile) > b_ms for stats, b_ms in budgets):
            break
        room += 1
    return room


def interactive_slo_ms(gateway) -> dict[str, float]:
    """Per model, the tightest SLO an interactive request may carry: the model's, or an
    interactive tenant's own when tighter."""
    tenant_slos = [
        t.slo_ms for t in gateway.settings.tenants if t.slo_class != "async" and t.slo_ms
    ]
    return {
        name: min([cfg.slo_ms] + tenant_slos) if cfg.slo_ms else min(tenant_slos, default=math.inf)
        for name, cfg in gateway.dispatcher.models.items()
    }


class Claim:
    """One job a consumer took: in the share's count until the pool counts it, then in the
    pool until the dispatcher answers. Each step counts once, however often it is called."""

    def __init__(self, share: VmShare):
        self._share = share
        self._state = 0  # 0 claimed, 1 in the pool, 2 done

    def dispatched(self) -> None:
        if self._state == 0:
            self._state = 1
            self._share.claiming -= 1
            self._share.in_pool += 1

    def done(self) -> None:
        self.dispatched()
        if self._state == 1:
            self._state = 2
            self._share.in_pool -= 1


class VmShare:
    """The async consumers' share of the VM pool (one per AsyncService)."""

    def __init__(self, gateway, settings: AsyncQueueSettings, clock=time.monotonic):
        self.gateway = gateway
        self.settings = settings
        self.clock = clock
        self.claiming = 0  # jobs taken and not yet in ``pool.outstanding``
        self.in_pool = 0  # jobs in ``pool.outstanding``: the rest there is interactive
        self._limit_rows = 0  # total rows (all classes) past which async waits
        self._limit_at_s = -math.inf
        self._interactive_at_s = -math.inf  # when interactive rows were last on the VMs

    def may_take(self) -> bool:
        pool = self.gateway.pool
        if pool is None or self.gateway.dispatcher is None:
            return False
        ready = len(pool.ready())
        if ready == 0:
            return False
        outstanding = pool.outstanding
        rows = outstanding + self.claiming
        if rows >= ready * self.settings.slots_per_replica:
            return False
        now_s = self.clock()
        if outstanding > self.in_pool:
            self._interactive_at_s = now_s
        elif now_s - self._interactive_at_s > INTERACTIVE_MEMORY_S:
            return True  # no interactive traffic lately: nothing to protect
        return rows < self._interactive_limit(ready, now_s)

    def take(self) -> Claim:
        """A consumer claims a job (call right after ``may_take``, before any await)."""
        self.claiming += 1
        return Claim(self)

    def _interactive_limit(self, ready: int, now_s: float) -> int:
        if now_s - self._limit_at_s >= REFRESH_S:
            self._limit_at_s = now_s
            state = self.gateway.dispatcher.live_state()
            max_rows = ready * self.settings.slots_per_replica
            slo_ms = interactive_slo_ms(self.gateway)
            self._limit_rows = state.vm.outstanding + interactive_room(state, slo_ms, max_rows)
        return self._limit_rows
