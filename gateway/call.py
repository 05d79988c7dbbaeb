"""What one inference call carries through the dispatcher: its context in, its result out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policies.state import RouteRequest

from .tenants import Tenant


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

    def route_request(self, model: str, model_slo_ms: float, batch: int) -> RouteRequest:
        """What the routing policy is asked about this call (the tenant's SLO, else the model's)."""
        return RouteRequest(
            tenant=self.tenant.name,
            model=model,
            batch_size=batch,
            slo_ms=self.tenant.settings.slo_ms or model_slo_ms,
            forced_route=self.forced_route,
            workers=self.workers,
        )


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
