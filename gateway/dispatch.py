"""The core of the gateway: one request's whole way, read top to bottom in ``Dispatcher.infer``.
No HTTP types in here.

Validate and admit (``gateway.admission``), route (the routing policy on the live view), run on
the path chosen (``gateway.execute``), then count, charge and record it (``gateway.billing``)."""

from __future__ import annotations

import time

from policies.costs import PriceTable
from policies.routing import Decision, Reason, Route, RoutingPolicy
from policies.routing.base import vm_can_take
from policies.state import LiveState, VmState
from vmpool.artifact import ModelConfig
from vmpool.codec import InferRequest
from vmpool.pool import ReplicaPool
from vmpool.pool_routing import ReplicaMisses

from .admission import InputCheck, admit
from .billing import account
from .call import CallContext, InferResult
from .errors import BadRequest, NotFound, TidegateError, Unavailable
from .execute import on_burst, on_vm
from .replica_look import second_look
from .ledger import Ledger
from .live import LiveCollector
from .metrics import GatewayMetrics
from .tenants import TenantRegistry


class Dispatcher:
    def __init__(
        self,
        *,
        models: dict[str, ModelConfig],
        tenants: TenantRegistry,
        pool: ReplicaPool | None,
        burst,
        policy: RoutingPolicy,
        ledger: Ledger | None,
        metrics: GatewayMetrics,
        prices: PriceTable,
        vm_timeout_s: float = 30.0,
        burst_timeout_s: float = 120.0,
        default_workers: int = 4,
        max_workers: int = 16,
        live: LiveCollector | None = None,
    ):
        self.models = models
        self.tenants = tenants
        self.pool = pool
        self.burst = burst
        self.policy = policy
        self.ledger = ledger
        self.metrics = metrics
        self.prices = prices
        self.vm_timeout_s = vm_timeout_s
        self.burst_timeout_s = burst_timeout_s
        self.default_workers = default_workers
        self.max_workers = max_workers
        self.live = live  # the live view routing decides from (and dispatch reports into)
        self.engine = None  # gateway.control.PolicyEngine: readiness, run-time policy changes
        self._check_inputs = InputCheck()
        # models the burst path refuses (their graph or plan: BurstUnavailable.refused), until
        # a burst of theirs runs (gateway.execute)
        self.no_burst: set[str | tuple[str, int, int]] = set()

    def model(self, name: str, version: str | None = None) -> ModelConfig:
        cfg = self.models.get(name)
        if cfg is None:
            raise NotFound(f"unknown model {name!r}")
        if version is not None and version != cfg.version:
            raise NotFound(f"model {name!r} has no version {version!r} (versions: {cfg.version})")
        return cfg

    def live_state(self) -> LiveState:
        if self.live is not None:
            return self.live.snapshot()
        pool = self.pool
        vm = VmState(
            ready_replicas=len(pool.ready()) if pool else 0,
            booting_replicas=len(pool.booting()) if pool else 0,
            outstanding=pool.outstanding if pool else 0,
        )
        return LiveState(now_s=time.monotonic(), vm=vm, burst_enabled=self.burst is not None)

    async def infer(self, ctx: CallContext, req: InferRequest) -> InferResult:
        cfg = self.model(ctx.model, ctx.version)
        self._check_inputs(req, cfg)
        if not ctx.admitted and self.ledger is not None and self.ledger.failing() is not None:
            # before admission and the run: nothing spent, charged or left waiting on its row
            # (the database's error is in the gateway's log, not for clients to read). An async
            # job (admitted when accepted) runs and waits: no client waits on it, and 503s
            # would use up its attempts (asyncq max_attempts) in seconds of an outage.
            raise Unavailable(
                "the ledger cannot record requests now; nothing was run or charged",
                headers={"Retry-After": "2"},
            )
        await admit(ctx, cfg, self.tenants, self.max_workers)
        batch = int(next(iter(req.inputs.values())).shape[0]) if req.inputs else 1
        decision = self._route(ctx, cfg, batch)
        # (``_value_``: the member's string; ``.value`` is a Python-level property, 6 a request)
        path, reason = decision.route._value_, decision.reason._value_
        self._count_decision(cfg.name, decision, path, reason)
        start = time.perf_counter()
        self.metrics.in_flight_now += 1
        try:
            if decision.reason == Reason.BURST_DISABLED and ctx.forced_route:
                # X-Tidegate-Route: burst where the config turns it off: a retry cannot help
                raise BadRequest(f"{decision.message} on this gateway (burst.enabled is false)")
            if decision.route == Route.REJECT:
                raise Unavailable(
                    decision.message,
                    headers={"Retry-After": str(max(1, int(decision.retry_after_s + 0.999)))},
                )
            if decision.route == Route.VM:
                try:
                    look = second_look(self, ctx, cfg, batch)
                    result = await on_vm(self, ctx, cfg, req, batch, decision.predicted_ms, look)
                except ReplicaMisses:  # its replica answers too late; functions meet its SLO
                    path, reason = Route.BURST.value, Reason.REPLICA_MISSES.value
                    self.metrics.add(self.metrics.routed, (cfg.name, path, reason))
                    try:
                        result = await on_burst(self, ctx, cfg, req, ctx.workers)
                    except Unavailable:  # the burst path cannot run it now: the VM after all
                        result = await on_vm(self, ctx, cfg, req, batch)
            else:
                try:
                    result = await on_burst(self, ctx, cfg, req, decision.workers)
                except Unavailable:  # found just now that the burst path cannot run it
                    if not self._vm_instead(ctx, cfg, decision.workers, batch, self.live_state()):
                        raise
                    result = await on_vm(self, ctx, cfg, req, batch)
        except TidegateError as exc:
            await account(self, ctx, cfg, path, exc.status, start, batch, None, reason)
            raise
        finally:
            self.metrics.in_flight_now -= 1
        await account(self, ctx, cfg, result.path, 200, start, batch, result, reason)
        return result

    def _route(self, ctx: CallContext, cfg: ModelConfig, batch: int) -> Decision:
        """The routing policy's decision on the live view, but VMs for a model the burst path
        refuses (``_vm_instead``)."""
        route_req = ctx.route_request(cfg.name, cfg.slo_ms, batch)
        if self.live is not None:
            self.live.on_arrival(cfg.name)
        decision = self.policy.route(route_req, state := self.live_state())
        if decision.reason == Reason.BURST_DISABLED and ctx.forced_route and self.burst is not None:
            # configured but not serving now (its runtime restarting, its circuit open): the
            # burst service refuses it with why and when to retry (503), not "disabled" (400)
            return Decision(Route.BURST, Reason.FORCED, ctx.workers)
        if decision.route == Route.BURST and self._vm_instead(
            ctx, cfg, decision.workers, batch, state
        ):
            decision = Decision(Route.VM, decision.reason)
        return decision

    def _vm_instead(
        self, ctx: CallContext, cfg: ModelConfig, workers: int | None, batch: int, state: LiveState
    ) -> bool:
        """A request the burst path refuses (the model's graph, or a plan for these workers and
        batch) goes to VMs, not to 503s, unless it forces the burst path or no VM can take it."""
        if ctx.forced_route or not self.no_burst:
            return False
        key = (cfg.name, workers or self.default_workers, batch)
        return (cfg.name in self.no_burst or key in self.no_burst) and vm_can_take(state)

    def _count_decision(self, model: str, decision: Decision, path: str, reason: str) -> None:
        metrics = self.metrics
        metrics.add(metrics.routed, (model, path, reason))
        if decision.predicted_ms is not None:
            metrics.set_later(metrics.predicted_latency, (model, path), decision.predicted_ms / 1e3)
