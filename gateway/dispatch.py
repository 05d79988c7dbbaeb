# size: validate, admit, route, execute, bill: one request's whole way, read top to bottom
"""The core of the gateway: validate, admit, route, execute, bill. No HTTP types in here."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from burst.instance_gate import request_slo_ms
from burst.service import BurstUnavailable
from policies.costs import PriceTable, function_cost_usd, store_cost_usd, vm_request_cost_usd
from policies.routing import Decision, Reason, Route, RoutingPolicy
from policies.routing.base import vm_can_take
from policies.state import LiveState, RouteRequest, VmState
from vmpool.artifact import ModelConfig
from vmpool.client import ReplicaError
from vmpool.codec import CodecError, InferRequest, validate_inputs
from vmpool.pool import NoReplicaError, ReplicaPool

from .deferred import later
from .errors import BadRequest, GatewayTimeout, NotFound, TidegateError, Unavailable
from .ledger import Ledger, row_values
from .live import LiveCollector
from .metrics import GatewayMetrics
from .tenants import Tenant, TenantRegistry


_MAX_VALID_SIGNATURES = 4096


@dataclass
class CallContext:
    tenant: Tenant
    model: str
    version: str | None = None
    forced_route: str | None = None
    workers: int | None = None
    request_id: str = ""
    # Admitted already (async jobs: rate limits and quotas apply when the job is accepted, and
    # the gateway itself sends it to the VMs): skip the tenant's admission checks.
    admitted: bool = False
    route: str = ""  # the path it was counted under, once routed (gateway/access_log.py)
    # Bookkeeping that may wait until the answer is written (metrics, stats, what the live view
    # learns): the HTTP endpoints pass a list and run it right after writing the answer, in the
    # same step (no other request runs in between, so nothing decides on stale figures; the
    # client just has its answer ~50-100 us sooner at one client). None: done at once.
    after: list | None = None


@dataclass
class InferResult:
    outputs: dict[str, np.ndarray]
    path: str
    cost_usd: float
    workers: int = 0
    cold_starts: int = 0
    function_cost_usd: float = 0.0
    store_cost_usd: float = 0.0
    billed_ms: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


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
        self._valid: dict[tuple, ModelConfig] = {}  # request signatures validate_inputs passed
        self._no_burst: set[str] = set()  # models whose graph the burst path cannot run

    def _vm_instead(self, ctx: CallContext, model: str, state: LiveState) -> bool:
        """A model whose graph the burst path cannot run goes to VMs, not to 503s, unless the
        request forces the burst path or no VM can take it."""
        return model in self._no_burst and not ctx.forced_route and vm_can_take(state)

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
        self._validate(req, cfg)
        if ctx.workers is not None and not 1 <= ctx.workers <= self.max_workers:
            raise BadRequest(f"X-Tidegate-Workers must be between 1 and {self.max_workers}")
        if not ctx.admitted:
            await self.tenants.admit(
                ctx.tenant, model=cfg.name, route_override=bool(ctx.forced_route or ctx.workers)
            )
        batch = int(next(iter(req.inputs.values())).shape[0]) if req.inputs else 1
        route_req = RouteRequest(
            tenant=ctx.tenant.name,
            model=cfg.name,
            batch_size=batch,
            slo_ms=ctx.tenant.settings.slo_ms or cfg.slo_ms,
            forced_route=ctx.forced_route,
            workers=ctx.workers,
        )
        if self.live is not None:
            self.live.on_arrival(cfg.name)
        decision = self.policy.route(route_req, state := self.live_state())
        if decision.route == Route.BURST and self._vm_instead(ctx, cfg.name, state):
            decision = Decision(Route.VM, decision.reason)
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
                result = await self._vm(ctx, cfg, req, batch, decision.predicted_ms)
            else:
                try:
                    result = await self._burst(ctx, cfg, req, decision.workers)
                except Unavailable:  # found just now that the burst path cannot run it
                    if not self._vm_instead(ctx, cfg.name, self.live_state()):
                        raise
                    result = await self._vm(ctx, cfg, req, batch)
        except TidegateError as exc:
            await self._account(ctx, cfg, path, exc.status, start, batch, None, reason)
            raise
        finally:
            self.metrics.in_flight_now -= 1
        await self._account(ctx, cfg, result.path, 200, start, batch, result, reason)
        return result

    async def _vm(
        self,
        ctx: CallContext,
        cfg: ModelConfig,
        req: InferRequest,
        batch: int,
        predicted_ms: float | None = None,
    ) -> InferResult:
        start = time.perf_counter()
        try:
            answer = await self.pool.infer(
                cfg.name, req.inputs, request_id=ctx.request_id or None, timeout_s=self.vm_timeout_s
            )
        except ReplicaError as exc:
            if exc.status == 504:
                raise GatewayTimeout(str(exc)) from None
            if 400 <= exc.status < 500:
                raise TidegateError(str(exc), exc.status) from None
            raise Unavailable(str(exc)) from None
        except NoReplicaError as exc:
            raise Unavailable(str(exc)) from None
        if self.live is not None:
            path_ms = (time.perf_counter() - start) * 1000.0  # boot wait and retries included
            later(ctx, self._learn, cfg.name, batch, answer, predicted_ms, path_ms)
        cost = vm_request_cost_usd(self.prices, answer.service_ms, batch)
        return InferResult(answer.outputs, "vm", cost, timings_ms={"vm": answer.service_ms})

    def _learn(self, model: str, batch: int, answer, predicted_ms, path_ms: float) -> None:
        """What the live view learns from a VM answer (may wait until it is written)."""
        self.live.on_vm_answer(
            model,
            batch,
            answer.service_ms,
            answer.queued_ahead,
            predicted_ms,
            path_ms,
            reported=answer.batch,
        )

    def _validate(self, req: InferRequest, cfg: ModelConfig) -> None:
        """``validate_inputs``, remembered per model config and request signature (names,
        dtypes, shapes, outputs asked for): clients send the same few shapes again and again."""
        key = (
            id(cfg),
            tuple([(name, array.dtype, array.shape) for name, array in req.inputs.items()]),
            None if req.outputs is None else tuple([r.name for r in req.outputs]),
        )
        if self._valid.get(key) is cfg:
            return
        try:
            validate_inputs(req, cfg)
        except CodecError as exc:
            raise BadRequest(str(exc)) from None
        if len(self._valid) >= _MAX_VALID_SIGNATURES:
            self._valid.clear()
        self._valid[key] = cfg  # held, so its id is not reused while the entry lives

    def _count_decision(self, model: str, decision: Decision, path: str, reason: str) -> None:
        metrics = self.metrics
        metrics.add(metrics.routed, (model, path, reason))
        if decision.predicted_ms is not None:
            metrics.set_later(metrics.predicted_latency, (model, path), decision.predicted_ms / 1e3)

    async def _burst(
        self, ctx: CallContext, cfg: ModelConfig, req: InferRequest, workers: int | None
    ) -> InferResult:
        workers = workers or self.default_workers
        live, answer, failed_after_ms = self.live, None, None
        token = live.burst_started(workers) if live is not None else None
        request_slo_ms.set(ctx.tenant.settings.slo_ms or cfg.slo_ms)  # the instance wait's SLO
        start = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                # no client id: the request's object-store keys must be its own (two clients
                # may send the same "id"), so the burst service makes a fresh one
                self.burst.infer(cfg.name, req.inputs, workers=workers, request_id=None),
                self.burst_timeout_s,
            )
        except asyncio.TimeoutError:
            failed_after_ms = (time.perf_counter() - start) * 1e3  # routing learns it (cold_start)
            raise GatewayTimeout(
                f"burst path did not answer in {self.burst_timeout_s:g} s"
            ) from None
        except BurstUnavailable as exc:
            failed_after_ms = (time.perf_counter() - start) * 1e3
            if isinstance(exc.__cause__, getattr(sys.modules.get("burst.graph"), "GraphError", ())):
                self._no_burst.add(cfg.name)  # its graph: no plan at any size, until a burst runs
                if ctx.forced_route:  # no retry can help the request as sent: a client error
                    raise BadRequest(f"{exc}; send it without X-Tidegate-Route: burst") from None
            retry_s = getattr(exc, "retry_after_s", None)
            raise Unavailable(
                str(exc), headers={"Retry-After": str(max(1, round(retry_s)))} if retry_s else None
            ) from None
        finally:
            if live is not None:
                live.burst_finished(
                    cfg.name,
                    answer.total_ms if answer else None,
                    answer.cold_starts if answer else 0,
                    token=token,
                    failed_after_ms=failed_after_ms,
                )
        self._no_burst.discard(cfg.name)
        fn_cost = function_cost_usd(self.prices, answer.invocations)
        st_cost = store_cost_usd(
            self.prices, answer.store_puts, answer.store_gets, answer.queue_requests
        )
        return InferResult(
            answer.outputs,
            "burst",
            fn_cost + st_cost,
            workers=answer.workers,
            cold_starts=answer.cold_starts,
            function_cost_usd=fn_cost,
            store_cost_usd=st_cost,
            billed_ms=sum(ms for ms, _ in answer.invocations),
            timings_ms={"burst": answer.total_ms, "comm": answer.comm_ms},
        )

    def _count(
        self,
        tenant: str,
        model: str,
        path: str,
        status: int,
        latency_ms: float,
        result: InferResult | None,
    ) -> None:
        """The metrics of one answered request (may wait until it is written: ``later``)."""
        metrics = self.metrics
        metrics.add(metrics.requests, (tenant, model, path, str(status)))
        if result:
            metrics.child(metrics.latency, model, path).observe(latency_ms / 1000.0)
            metrics.add(metrics.cost, (tenant, path), result.cost_usd)
            if result.cold_starts:
                metrics.cold_starts.labels(model).inc(result.cold_starts)
            if result.billed_ms:
                metrics.function_billed.labels(model).inc(result.billed_ms / 1000.0)

    async def _account(
        self,
        ctx: CallContext,
        cfg: ModelConfig,
        path: str,
        status: int,
        start: float,
        batch: int,
        result: InferResult | None,
        reason: str = "",
    ) -> None:
        latency_ms = (time.perf_counter() - start) * 1000.0
        tenant = ctx.tenant.name
        ctx.route = path  # counted here: the access log counts only what never got this far
        later(ctx, self._count, tenant, cfg.name, path, status, latency_ms, result)
        cost = result.cost_usd if result else 0.0
        if result:
            await self.tenants.charge(ctx.tenant, cost)
        if self.ledger is not None:
            # the answer goes out only once its row is durable (group commit: see gateway.ledger)
            await self.ledger.record(
                row_values(
                    ctx.request_id,
                    time.time(),
                    tenant,
                    cfg.name,
                    path,
                    status,
                    latency_ms,
                    batch,
                    result.workers if result else 0,
                    result.cold_starts if result else 0,
                    cost if (result and path == "vm") else 0.0,
                    result.function_cost_usd if result else 0.0,
                    result.store_cost_usd if result else 0.0,
                    cost,
                    result.billed_ms if result else 0,
                    "",
                    reason,
                )
            )
