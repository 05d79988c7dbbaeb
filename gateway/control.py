"""The policy engine of a running gateway: the live view, the routing policy, the autoscaler and
the control loop that every ``tick_s`` snapshots, asks the autoscaler and drives the pool.

Policies can be swapped at run time (``/admin/policy``); readiness is honest: ready once the
minimum of VM replicas is ready and the default burst plans are prepared (with no VM minimum,
once the burst path is), and for slo-aware on the embedded runtime one cold start measured.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from burst.backend import backend_ready
from policies.autoscaling import Autoscaler, ScaleDecision
from policies.autoscaling.warm_pool import ping_interval_s
from policies.state import PathKind
from vmpool.pool import ReplicaPool

from .cold_start import probe_cold_start, zero_inputs
from .control_log import ControlLog
from .live import LiveCollector
from .metrics import GatewayMetrics
from .policy_settings import PolicyChoice, build_routing, configured_routing_params
from .slo_budget import budget_params

log = logging.getLogger("tidegate.control")
# Function instances the warm pool starts at once: a dozen runtimes importing torch together on
# a 2-core host overran the local runtime's 60 s init timeout, and the whole prewarm failed.
PREWARM_STEP = 4
LAST_DECISION_KEYS = ("replicas", "reason", "warm_functions")  # /admin/paths shows these


@runtime_checkable
class Prewarmer(Protocol):
    """A burst backend that can keep function instances warm (optional)."""

    async def prewarm(self, instances: int) -> bool | None: ...

    async def infer(self, model: str, inputs: dict, *, workers: int): ...


class PolicyEngine:
    def __init__(
        self,
        *,
        choice: PolicyChoice,
        configured_replicas: int,
        pool: ReplicaPool | None,
        collector: LiveCollector,
        dispatcher,
        metrics: GatewayMetrics,
        burst: object | None = None,
        prepare_task: asyncio.Task | None = None,
        has_models: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        control_log: ControlLog | None = None,
    ):
        self.configured_replicas = configured_replicas
        self.pool, self.collector, self.dispatcher = pool, collector, dispatcher
        self.metrics, self.burst, self.prepare_task = metrics, burst, prepare_task
        self.has_models = has_models
        self._sleep = sleep
        self.control_log = control_log  # each tick's snapshot and decision (control_log.py)
        self._task: asyncio.Task | None = None
        self._prewarm: asyncio.Task | None = None
        self._pinged_s = 0.0  # when the warm pool was last pinged
        self.last_decision: ScaleDecision | None = None
        self._last_tick_s: float | None = None
        self.choice = choice
        self.autoscaler: Autoscaler = choice.autoscaling.build(configured_replicas)
        dispatcher.policy = build_routing(
            choice.routing_policy, choice.routing_params, dispatcher.prices
        )
        collector.use_budget(*budget_params(dispatcher.policy))

    # run-time changes ----------------------------------------------------------------------

    def set_policy(self, choice: PolicyChoice) -> None:
        """Swap the routing policy and the autoscaler (built first: a bad one changes nothing)."""
        policy = build_routing(choice.routing_policy, choice.routing_params, self.dispatcher.prices)
        scaler = choice.autoscaling.build(self.configured_replicas)
        self.dispatcher.policy, self.autoscaler, self.choice = policy, scaler, choice
        self.collector.use_budget(*budget_params(policy))  # the window and quantile it spends at
        log.info("policy now %s + %s", choice.routing_policy, choice.autoscaling.policy)

    # the control loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        next_s: float | None = None  # the first tick at once: a warm pool starts with the gateway
        try:
            while True:
                if next_s is not None:
                    await self._sleep(max(next_s - self.collector.now(), 0.0))
                next_s = self._next_tick_s(next_s)
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a failed tick is seen (log, metric); the next one tries
                    self.metrics.autoscaler_errors.inc()
                    log.exception("control-loop tick failed")
        finally:
            if self._prewarm is not None:
                self._prewarm.cancel()

    def _next_tick_s(self, due_s: float | None) -> float:
        """When the next tick is due: every ``tick_s`` on a fixed grid, as the simulator ticks
        (``tick_s`` after the last tick ended drifted ~1 % a tick, so a replay's cooldowns and
        forecast steps fell in other seconds); a tick late after a stall runs at once, those
        it overran are skipped."""
        tick_s, now = self.choice.autoscaling.tick_s, self.collector.now()
        late = 0.0 if due_s is None else max(now - due_s, 0.0)
        return (now if due_s is None else due_s) + (math.floor(late / tick_s) + 1) * tick_s

    async def tick(self) -> ScaleDecision:
        state = self.collector.snapshot(fresh=True)
        decision = self.autoscaler.decide(state)
        self.last_decision = decision
        if self.control_log is not None:
            self.control_log.write(state, decision)
        pool = self.pool
        if pool is not None and self.has_models and decision.replicas != pool.desired:
            log.info("scaling to %d replicas (%s)", decision.replicas, decision.reason)
            await pool.scale_to(decision.replicas)
        await self._keep_warm(decision, state.now_s, quiet=state.burst.in_flight == 0)
        self._export(decision)
        return decision

    async def _keep_warm(self, decision: ScaleDecision, now_s: float, quiet: bool = True) -> None:
        dt = 0.0 if self._last_tick_s is None else now_s - self._last_tick_s
        self._last_tick_s = now_s
        self.collector.warm_functions_target = decision.warm_functions
        # those the forecast no longer asks for are neither billed nor counted as held
        self.collector.release_prewarmed(decision.warm_functions)
        idle = self._prewarm is None or self._prewarm.done()
        if decision.warm_functions and isinstance(self.burst, Prewarmer) and idle:
            # in the background: starting instances takes seconds, the tick must not wait
            self._prewarm = asyncio.get_running_loop().create_task(
                self._warm_up(decision.warm_functions, now_s, quiet)
            )
            self._prewarm.add_done_callback(_log_failure)
        if dt > 0 and decision.warm_cost_usd_per_s:
            self.metrics.warm_cost.inc(decision.warm_cost_usd_per_s * dt)

    async def _warm_up(self, instances: int, now_s: float, quiet: bool = True) -> None:
        """Start the instances, at most ``PREWARM_STEP`` more per tick; only once they are up
        does routing count them as warm (one still starting would pay its cold start). Those
        up are pinged (one invocation each, together) once ``ping_interval_s`` has passed since
        their last, so the platform does not reclaim them between bursts, when no burst request
        is in flight (``quiet``: all are idle, so no ping starts one; the simulator pings idle
        ones only) (``policies/autoscaling/warm_pool.py``)."""
        assert isinstance(self.burst, Prewarmer)
        have = self.collector.prewarmed_instances
        step = instances if instances <= have else min(instances, have + PREWARM_STEP)
        t0 = asyncio.get_running_loop().time()
        if await self.burst.prewarm(step) is False:
            return
        if step > have:
            await self._first_invocations(step - have)
            # what starting instances took here is what a request sent to a cold one would wait
            self.collector.cold_start_ms = (asyncio.get_running_loop().time() - t0) * 1e3
            if not have:  # (a pool grown since is pinged with the first ones: a little early)
                self._pinged_s = now_s
        elif quiet and now_s - self._pinged_s >= ping_interval_s():  # (keep-alive unknown)
            await self._first_invocations(step)
            self._pinged_s = now_s
        self.collector.prewarmed_instances = step
        self.collector.release_prewarmed(self.collector.warm_functions_target)  # asked fewer since

    async def _first_invocations(self, n: int) -> None:
        """Invoke the ``n`` instances just started once per model, together (so each takes its
        own): a fresh instance's first invocation imports its clients and loads the plan, 13 s
        on a loaded 2-core host, which a request must not pay. Failures are the next
        request's to report."""
        burst, workers = self.burst, getattr(self.dispatcher, "default_workers", 1)
        assert isinstance(burst, Prewarmer)
        for cfg in self.dispatcher.models.values():
            inputs = zero_inputs(cfg)
            calls = [burst.infer(cfg.name, inputs, workers=workers) for _ in range(n)]
            await asyncio.gather(*calls, return_exceptions=True)

    def _export(self, decision: ScaleDecision | None = None) -> None:
        m, pool = self.metrics, self.pool
        if pool is not None:
            m.replicas.labels("desired").set(pool.desired)
            m.replicas.labels("ready").set(len(pool.ready()))
            m.replicas.labels("booting").set(len(pool.booting()))
            m.replicas.labels("draining").set(len(pool.draining()))
        if decision is not None:
            m.warm_functions.set(decision.warm_functions)
        for model in self.dispatcher.models:
            for path in PathKind:
                obs = self.collector.observed(model, path)
                if obs is None:
                    continue
                for pct, value in (("50", obs.p50_ms), ("99", obs.p99_ms)):
                    m.observed_latency.labels(model, path.value, pct).set(value / 1e3)

    def refresh_metrics(self) -> None:
        """Called at scrape time so the gauges are current between ticks."""
        self._export()

    # readiness and visibility ----------------------------------------------------------------

    def plans_prepared(self) -> bool:
        return self.prepare_task is None or self.prepare_task.done()

    def ready(self) -> bool:
        if not self.has_models:
            return False
        need = self.autoscaler.min_replicas
        ready_vms = len(self.pool.ready()) if self.pool is not None else 0
        if self.burst is not None and not self.plans_prepared():
            return False
        if need > 0:
            return ready_vms >= need
        return backend_ready(self.burst) or ready_vms > 0  # a dead runtime is not ready

    def paths(self) -> dict:
        state = self.collector.snapshot(fresh=True)
        vm, burst = state.vm, state.burst
        models = {}
        for name, stats in state.models.items():
            models[name] = {
                "slo_ms": stats.slo_ms,
                "arrival_rate_per_s": round(stats.arrival_rate_short_per_s, 3),
                "vm_observed_ms": _quantiles(stats.vm_latency),
                "burst_observed_ms": _quantiles(stats.burst_latency),
                "burst_predicted_ms": stats.burst_predicted_ms,
                "vm_batch_ms": {str(b): round(ms, 3) for b, ms in stats.vm_service_ms_by_batch},
            }
        d = self.last_decision
        return {
            "ready": self.ready(),
            "vm": {
                "desired": vm.desired_replicas,
                "ready": vm.ready_replicas,
                "booting": vm.booting_replicas,
                "draining": vm.draining_replicas,
                "outstanding": vm.outstanding,
                "boot_remaining_s": round(vm.boot_remaining_s, 3),
                "expected_boot_s": round(vm.boot_s, 3),
                "min_ready": self.autoscaler.min_replicas,
            },
            "burst": {
                "enabled": state.burst_enabled,
                "plans_prepared": self.plans_prepared(),
                "in_flight": burst.in_flight,
                "warm_instances": burst.warm_instances,
                "free_concurrency": burst.free_concurrency,
                "recent_cold_starts": burst.recent_cold_starts,
                "cold_start_ms": round(burst.cold_start_ms, 1),  # what routing assumes now
            },
            "autoscaler": {
                "policy": self.autoscaler.name,
                "last": None if d is None else {k: getattr(d, k) for k in LAST_DECISION_KEYS},
            },
            "routing_policy": self.choice.routing_policy,
            "models": models,
        }

    async def close(self) -> None:
        if self._prewarm is not None:
            self._prewarm.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.control_log is not None:
            self.control_log.close()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("keeping function instances warm failed: %s", task.exception())


def _quantiles(q) -> dict | None:
    if q is None:
        return None
    ms = {"p50": q.p50_ms, "p90": q.p90_ms, "p99": q.p99_ms}
    return {**{k: round(v, 3) for k, v in ms.items()}, "count": q.count}


def start_policy_engine(state, *, prepare_task: asyncio.Task | None = None) -> PolicyEngine:
    """Build the live view and the engine for a started gateway (``GatewayState``) and start
    its control loop; the lifespan keeps the engine on ``state.engine`` and closes it."""
    s, d = state.settings, state.dispatcher
    models = d.models
    max_batch = s.vm.max_batch_size or max((m.max_batch_size for m in models.values()), default=8)
    queue_delay_ms = (
        s.vm.max_queue_delay_ms
        if s.vm.max_queue_delay_ms is not None
        else min((m.max_queue_delay_ms for m in models.values()), default=2.0)
    )
    local_platform = getattr(s.burst.platform, "kind", "local") == "local"
    collector = LiveCollector(
        pool=state.pool,
        burst=state.burst,
        model_slos_ms={n: m.slo_ms for n, m in models.items()},
        burst_concurrency=s.burst.concurrency if local_platform else None,
        keep_alive_s=s.burst.keep_alive_s,
        default_workers=s.burst.default_workers,
        memory_mb=s.burst.memory_mb,
        max_batch_size=max_batch,
        max_queue_delay_ms=queue_delay_ms,
    )
    d.live = collector
    if s.routing_policy == "slo-aware" and local_platform and isinstance(state.burst, Prewarmer):
        # readiness waits for a measured cold start: routing's default was 10x short here
        prepare_task = asyncio.get_running_loop().create_task(
            probe_cold_start(
                prepare_task,
                state.burst.prewarm,
                state.burst.infer,
                models,
                s.burst.default_workers,
                lambda ms: setattr(collector, "cold_start_ms", ms),
                timeout_s=s.burst.timeout_s,  # a cold start past it: spills would time out
            )
        )
        state.tasks.append(prepare_task)
    params = configured_routing_params(s.routing_policy, s.spill_outstanding_per_replica)
    engine = PolicyEngine(
        choice=PolicyChoice(s.routing_policy, params, s.autoscaling),
        configured_replicas=s.vm.replicas,
        pool=state.pool,
        collector=collector,
        dispatcher=d,
        metrics=state.metrics,
        burst=state.burst,
        prepare_task=prepare_task,
        has_models=bool(models),
        control_log=ControlLog.from_env(),
    )
    engine.start()
    state.tasks.append(engine._task)  # cancelled and awaited by the lifespan's stop
    d.engine = engine
    return engine
