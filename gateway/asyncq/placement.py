"""Which requests go to the queue without asking: the ``async`` SLO class (tenant config).

A tenant of the async class gets ``202`` + ``Location`` for an infer call (as if it had sent
``Prefer: respond-async``) when the router's ``QueueFirst`` finds the queue meets its deadline;
otherwise the call is served at once, like an interactive one.
"""

from __future__ import annotations

from policies.routing import Route
from policies.routing.async_class import QueueFirst
from policies.state import RouteRequest

from ..errors import TidegateError
from ..model_version import find_model
from .config import AsyncQueueSettings


def deadline_s(tenant_settings, settings: AsyncQueueSettings) -> float:
    return tenant_settings.deadline_s or settings.default_deadline_s


def min_deadline_s(tenants, settings: AsyncQueueSettings) -> float:
    """The tightest deadline any tenant's jobs have."""
    return min([t.deadline_s for t in tenants if t.deadline_s] + [settings.default_deadline_s])


def queues(
    gateway, settings: AsyncQueueSettings, headers: dict[str, str], model: str, version: str | None
) -> bool:
    """Errors (a bad key, an unknown model) are left to the synchronous path, which raises
    them again; a request that forces a route is never queued."""
    dispatcher = gateway.dispatcher
    if dispatcher is None or headers.get("x-tidegate-route"):
        return False
    try:
        tenant = dispatcher.tenants.authenticate(
            headers.get("authorization"), headers.get("x-api-key")
        )
        cfg = find_model(dispatcher, model, version)
    except TidegateError:
        return False
    if tenant.settings.slo_class != "async":
        return False
    request = RouteRequest(
        tenant=tenant.name,
        model=cfg.name,
        batch_size=1,
        slo_ms=tenant.settings.slo_ms or cfg.slo_ms,
        deadline_s=deadline_s(tenant.settings, settings),
    )
    decision = QueueFirst(dispatcher.policy).route(request, dispatcher.live_state())
    return decision.route == Route.QUEUE
