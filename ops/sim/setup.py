"""What one simulation run is given besides the trace."""

from __future__ import annotations

from dataclasses import dataclass, field

from .profile import SimProfile
from .queue import AsyncSetup


@dataclass
class SimSetup:
    """Everything one run needs besides the trace."""

    profile: SimProfile
    routing: object  # a policies.routing RoutingPolicy
    autoscaler: object  # a policies.autoscaling Autoscaler
    prices: object  # policies.costs.PriceTable
    initial_replicas: int = 1
    tick_s: float = 1.0
    slo_ms_by_tenant: dict[str, float] = field(default_factory=dict)
    slo_percentile: float = 0.99
    seed: int = 0
    name: str = ""
    exact_route_keys: bool = False  # cache routing on whole snapshots only (tests compare)
    async_setup: AsyncSetup | None = None  # async-class tenants and the queue's consumers
