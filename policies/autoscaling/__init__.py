"""How many VM replicas to keep: ``Autoscaler.desired(state) -> int``, one file per scaler."""

from __future__ import annotations

from .base import Autoscaler, ScaleDecision, ScalerBase
from .knative import Knative
from .predictive import Predictive
from .queue import QueueLength
from .simple import FixedScaler, TargetTracking

AUTOSCALERS = {
    "none": FixedScaler,
    "target": TargetTracking,
    "knative": Knative,
    "predictive": Predictive,
    "queue": QueueLength,
}


def make_autoscaler(policy: str, **params) -> Autoscaler:
    """Build a scaler by name; ``params`` are its constructor's (min/max replicas included)."""
    try:
        cls = AUTOSCALERS[policy]
    except KeyError:
        raise ValueError(
            f"unknown autoscaling policy {policy!r}; known: {', '.join(AUTOSCALERS)}"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for autoscaling policy {policy!r}: {exc}") from None


__all__ = [
    "AUTOSCALERS",
    "Autoscaler",
    "FixedScaler",
    "Knative",
    "Predictive",
    "QueueLength",
    "ScaleDecision",
    "ScalerBase",
    "TargetTracking",
    "make_autoscaler",
]
