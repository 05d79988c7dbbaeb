"""Static provisioner: a fixed list of model servers someone else runs (an existing fleet)."""

from __future__ import annotations

import time

from .base import ReplicaInfo, ReplicaState


class StaticProvisioner:
    """Replicas at fixed URLs. ``scale_to`` cannot add servers; the pool's health checks decide
    which of them take traffic."""

    boot_failures = 0
    expected_boot_s = 0.0

    def __init__(self, urls: list[str]):
        if not urls:
            raise ValueError("the static provisioner needs at least one replica URL")
        now = time.monotonic()
        self._replicas = [
            ReplicaInfo(f"static-{i + 1}", url.rstrip("/"), ReplicaState.READY, now, now)
            for i, url in enumerate(urls)
        ]

    def replicas(self) -> list[ReplicaInfo]:
        return list(self._replicas)

    async def scale_to(self, count: int) -> None:
        return None

    async def drain(self, replica_id: str) -> None:
        return None  # not ours to stop

    def mark_failed(self, replica_id: str) -> None:
        return None  # the health checks keep it out of rotation until it answers again

    async def close(self) -> None:
        return None
