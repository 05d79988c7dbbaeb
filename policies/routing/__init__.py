"""Where a request goes: ``route(request, live_state) -> Decision``. One file per policy."""

from __future__ import annotations

from .base import REJECT_MESSAGES, Decision, Reason, Route, RoutingPolicy
from .simple import BurstOnly, VmOnly
from .slo_aware import SloAware, burst_instances, predict_burst_ms
from .threshold import Threshold

POLICIES = {
    "vm-only": VmOnly,
    "burst-only": BurstOnly,
    "threshold": Threshold,
    "slo-aware": SloAware,
}


def make_policy(name: str, **params) -> RoutingPolicy:
    """Build a policy by name; ``params`` are its fields (unknown ones are a clear error)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown routing policy {name!r}; known: {', '.join(POLICIES)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for routing policy {name!r}: {exc}") from None


__all__ = [
    "POLICIES",
    "REJECT_MESSAGES",
    "BurstOnly",
    "Decision",
    "Reason",
    "Route",
    "RoutingPolicy",
    "SloAware",
    "Threshold",
    "VmOnly",
    "burst_instances",
    "make_policy",
    "predict_burst_ms",
]
