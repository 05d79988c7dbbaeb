"""Where a request goes: ``route(request, live_state) -> Decision``. One file per policy."""

from __future__ import annotations

import inspect

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


def check_params(name: str, params: dict, internal: tuple[str, ...] = ()) -> None:
    """ValueError naming the parameters policy ``name`` takes when ``params`` holds another
    (``internal``: constructor arguments the caller supplies, not the user)."""
    cls = POLICIES[name]
    takes = [p for p in inspect.signature(cls).parameters if p not in (*internal, "name")]
    unknown = sorted(str(key) for key in params if key not in takes)
    if unknown:
        raise ValueError(
            f"routing policy {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(takes) or 'none'}"
        )


def make_policy(name: str, /, **params) -> RoutingPolicy:
    """Build a policy by name; ``params`` are its fields (unknown ones are a clear error)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown routing policy {name!r}; known: {', '.join(POLICIES)}") from None
    check_params(name, params)
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
    "check_params",
    "Threshold",
    "VmOnly",
    "burst_instances",
    "make_policy",
    "predict_burst_ms",
]
