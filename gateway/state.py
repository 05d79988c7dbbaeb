"""``GatewayState``: the live objects of one gateway app, typed, reachable from any router.

Built by ``create_app`` and stored on ``app.state.gateway``; the lifespan fills in the parts that
exist only while the app runs (dispatcher, pool, burst backend, ledger). A router factory takes it:
``app.include_router(admin_router(state))``, or a handler reads ``request.app.state.gateway``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from burst.backend import backend_ready
from vmpool.body import BodyBudget
from vmpool.stats import StatsRegistry

from .errors import Unavailable
from .metrics import GatewayMetrics
from .settings import Settings
from .tenants import TenantRegistry

if TYPE_CHECKING:
    from vmpool.artifact import ModelConfig
    from vmpool.pool import ReplicaPool

    from .dispatch import Dispatcher
    from .ledger import Ledger


@dataclass
class GatewayState:
    settings: Settings
    metrics: GatewayMetrics
    tenants: TenantRegistry
    stats: StatsRegistry = field(default_factory=StatsRegistry)  # GET /v2/models/{m}/stats
    body_budget: BodyBudget = field(default_factory=lambda: BodyBudget(None))
    # Set by the lifespan while the app runs; None before start-up and after shutdown.
    dispatcher: Dispatcher | None = None
    pool: ReplicaPool | None = None
    burst: object | None = None
    ledger: Ledger | None = None
    asyncq: object | None = None  # async inference (gateway.asyncq.service), when enabled
    # Background tasks owned by the app (kept referenced; cancelled and awaited at shutdown).
    tasks: list[asyncio.Task] = field(default_factory=list)
    # The gRPC server beside HTTP (gateway.grpc), while the app runs and when enabled.
    grpc: object | None = None

    @property
    def started(self) -> bool:
        return self.dispatcher is not None

    def require_dispatcher(self) -> Dispatcher:
        """The dispatcher, or 503 while the gateway is starting or stopping."""
        if self.dispatcher is None:
            raise Unavailable("gateway is not started", headers={"Retry-After": "1"})
        return self.dispatcher

    @property
    def models(self) -> dict[str, ModelConfig]:
        return self.dispatcher.models if self.dispatcher is not None else {}

    def ready(self) -> bool:
        """Ready to serve: models are loaded and some path (VM replica or burst) can take work."""
        d = self.dispatcher
        if d is None or not d.models:
            return False
        if d.ledger is not None and d.ledger.failing() is not None:
            return False  # requests are refused until the ledger's database takes rows again
        if d.engine is not None:  # min VM replicas ready and default plans prepared
            return d.engine.ready()
        return bool(d.pool and d.pool.ready()) or backend_ready(d.burst)
