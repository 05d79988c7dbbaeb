"""The pool of full-model replicas: health, replica choice, failover."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
import numpy as np

from .client import ReplicaClient, ReplicaError
from .provisioners.base import Provisioner, ReplicaInfo, ReplicaState

log = logging.getLogger("tidegate.pool")


@dataclass
class PoolAnswer:
    outputs: dict[str, np.ndarray]
    replica_id: str
    attempts: int
    service_ms: float


class NoReplicaError(Exception):
    """No ready replica could take the request."""


class ReplicaPool:
    """Sends each request to one of two random ready replicas, whichever has fewer outstanding.

    A request that could not reach its replica (connection refused, replica draining) goes to
    another one; a request the replica accepted is never sent twice.
    """

    def __init__(self, provisioner: Provisioner, client: ReplicaClient | None = None, *,
                 health_interval_s: float = 1.0, max_attempts: int = 3, seed: int | None = None):
        self.provisioner = provisioner
        self.client = client or ReplicaClient()
        self.health_interval_s = health_interval_s
        self.max_attempts = max_attempts
        self._outstanding: dict[str, int] = {}
        self._unhealthy: set[str] = set()
        self._rng = random.Random(seed)
        self._health_task: asyncio.Task | None = None
        self.desired = 0

    async def start(self, replicas: int) -> None:
        await self.scale_to(replicas)
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def scale_to(self, count: int) -> None:
        self.desired = count
        await self.provisioner.scale_to(count)

    def ready(self) -> list[ReplicaInfo]:
        return [r for r in self.provisioner.replicas()
                if r.state == ReplicaState.READY and r.id not in self._unhealthy]

    def booting(self) -> list[ReplicaInfo]:
        return [r for r in self.provisioner.replicas() if r.state == ReplicaState.BOOTING]

    @property
    def outstanding(self) -> int:
        return sum(self._outstanding.values())

    def _choose(self, exclude: set[str]) -> ReplicaInfo | None:
        candidates = [r for r in self.ready() if r.id not in exclude]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        return a if self._outstanding.get(a.id, 0) <= self._outstanding.get(b.id, 0) else b

    async def infer(self, model: str, inputs: dict[str, np.ndarray], *,
                    outputs: list[str] | None = None, request_id: str | None = None,
                    timeout_s: float | None = None) -> PoolAnswer:
        tried: set[str] = set()
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            replica = self._choose(tried)
            if replica is None:
                break
            tried.add(replica.id)
            self._outstanding[replica.id] = self._outstanding.get(replica.id, 0) + 1
            start = time.perf_counter()
            try:
                result = await self.client.infer(replica.url, model, inputs, outputs,
                                                 request_id, timeout_s)
                return PoolAnswer(result, replica.id, attempt,
                                  (time.perf_counter() - start) * 1000.0)
            except ReplicaError as exc:
                if not exc.retryable:
                    raise
                if exc.connect:
                    self._unhealthy.add(replica.id)
                last = exc
            finally:
                self._outstanding[replica.id] -= 1
        if last is not None:
            raise NoReplicaError(f"no replica could take the request: {last}")
        raise NoReplicaError("no VM replica is ready")

    async def _health_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(self.health_interval_s, 0.5))
        backoff_s, retry_at, failures_seen = self.health_interval_s, 0.0, 0
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(self.health_interval_s)
                for r in [r for r in self.provisioner.replicas() if r.state == ReplicaState.READY]:
                    if await _probe(session, r.url):
                        self._unhealthy.discard(r.id)
                        continue
                    self._unhealthy.add(r.id)
                    mark = getattr(self.provisioner, "mark_failed", None)
                    if mark and not await _probe(session, r.url + "/v2/health/live", raw=True):
                        log.warning("replica %s (%s) is gone; replacing it", r.id, r.url)
                        mark(r.id)
                # Keep the desired count; a replica that keeps failing to boot is retried with
                # exponential backoff instead of in a tight crash loop.
                live = sum(r.state in (ReplicaState.BOOTING, ReplicaState.READY)
                           for r in self.provisioner.replicas())
                failures = getattr(self.provisioner, "boot_failures", 0)
                now = time.monotonic()
                if live < self.desired and now >= retry_at:
                    if failures > failures_seen:
                        log.warning("a replica failed to boot; retrying in %.0f s", backoff_s)
                        backoff_s = min(backoff_s * 2, 60.0)
                    else:
                        backoff_s = self.health_interval_s
                    failures_seen, retry_at = failures, now + backoff_s
                    await self.provisioner.scale_to(self.desired)

    async def close(self) -> None:
        if self._health_task:
            self._health_task.cancel()
            try:
                await self._health_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()
        await self.provisioner.close()


async def _probe(session: aiohttp.ClientSession, url: str, raw: bool = False) -> bool:
    try:
        async with session.get(url if raw else url + "/v2/health/ready") as resp:
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False
