"""After a request is answered (or refused once routed): its metrics, its tenant's charge and
its ledger row. The row is written before the answer goes out; the metrics may wait until the
answer is written (``gateway.deferred``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from vmpool.artifact import ModelConfig

from .call import CallContext, InferResult
from .deferred import later
from .ledger import row_values
from .metrics import GatewayMetrics

if TYPE_CHECKING:
    from .dispatch import Dispatcher


def count(
    metrics: GatewayMetrics,
    tenant: str,
    model: str,
    path: str,
    status: int,
    latency_ms: float,
    result: InferResult | None,
) -> None:
    """The metrics of one answered request (may wait until it is written: ``later``)."""
    metrics.add(metrics.requests, (tenant, model, path, str(status)))
    if result:
        metrics.child(metrics.latency, model, path).observe(latency_ms / 1000.0)
        metrics.add(metrics.cost, (tenant, path), result.cost_usd)
        if result.cold_starts:
            metrics.cold_starts.labels(model).inc(result.cold_starts)
        if result.billed_ms:
            metrics.function_billed.labels(model).inc(result.billed_ms / 1000.0)


async def account(
    d: Dispatcher,
    ctx: CallContext,
    cfg: ModelConfig,
    path: str,
    status: int,
    start: float,
    batch: int,
    result: InferResult | None,
    reason: str = "",
) -> None:
    """Count, charge and record one request that was routed (``result`` None: it failed)."""
    latency_ms = (time.perf_counter() - start) * 1000.0
    tenant = ctx.tenant.name
    ctx.route = path  # counted here: the access log counts only what never got this far
    later(ctx, count, d.metrics, tenant, cfg.name, path, status, latency_ms, result)
    cost = result.cost_usd if result else 0.0
    if result:
        await d.tenants.charge(ctx.tenant, cost)
    if d.ledger is not None:
        # the answer goes out only once its row is durable (group commit: see gateway.ledger)
        await d.ledger.record(
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
