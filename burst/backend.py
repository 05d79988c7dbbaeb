"""What the gateway needs of a burst path (``create_app(settings, burst=...)`` accepts any)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class BurstBackend(Protocol):
    async def start(self) -> None:
        """Start whatever the platform needs (the embedded function runtime, clients)."""

    async def close(self) -> None:
        """Stop it all; nothing keeps running."""

    async def prepare(self, models: list[str], workers: int, batch: int = 1) -> None:
        """Make and store the default plans ahead of traffic."""

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        workers: int,
        request_id: str | None = None,
        split: str | None = None,
    ):
        """Run one request partitioned; a ``BurstAnswer``, or ``BurstUnavailable`` (503)."""

    def ready(self) -> bool:
        """Whether requests can be served now (started, platform healthy, circuit closed)."""

    def free_concurrency(self) -> int:
        """Function instances free now (0 while unhealthy): what routing can still spill."""

    def live_stats(self) -> "BurstStats":
        """Free concurrency and what else the backend knows, for the gateway's live view."""


@dataclass(frozen=True)
class BurstStats:
    """What the backend knows about its platform now (``None``: it does not know); read by the
    gateway's live view (``gateway.live.BurstLiveSource``)."""

    warm_instances: int | None = None
    free_concurrency: int | None = None
    predicted_ms: dict[str, float] = field(default_factory=dict)
    predicted_usd: dict[str, float] = field(default_factory=dict)  # a request's, by its plan
    workers: dict[str, int] = field(default_factory=dict)  # a request's workers, by its plan


def backend_ready(backend) -> bool:
    """``backend.ready()``; a stand-in without health to report (tests) counts as ready."""
    ready = getattr(backend, "ready", None)
    return bool(ready()) if callable(ready) else backend is not None
