"""Replica choice and retries: which ready replica takes a request, and what a failure means.

``ReplicaRouting`` is the request side of ``vmpool.pool.ReplicaPool``: it reads the pool's
replica table (outstanding counts, unhealthy and draining sets, circuit breakers) and never
changes the fleet; scaling, draining and health checks stay in ``pool``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from .batch_report import BatchReport
from .breaker import Breakers
from .client import ReplicaClient, ReplicaError
from .provisioners.base import Provisioner, ReplicaInfo, ReplicaState

BOOT_POLL_S = 0.05  # how often a request waiting for a booting replica looks again


@dataclass
class PoolAnswer:
    outputs: dict[str, np.ndarray]
    replica_id: str
    attempts: int
    service_ms: float
    queued_ahead: int = 0  # requests already outstanding on that replica when this one was sent
    batch: BatchReport | None = None  # the batch the replica ran it in, if it said


class NoReplicaError(Exception):
    """No ready replica could take the request."""


class ReplicaRouting:
    """Sends each request to one of two random ready replicas, whichever has fewer outstanding.

    A request that could not reach its replica goes to another one. A request whose replica died
    under it (or was draining) is sent once more elsewhere: inference has no side effects. While
    replicas boot and none is ready, a request waits for the first one, bounded by its timeout.
    """

    # the replica table, owned and set up by ReplicaPool
    provisioner: Provisioner
    client: ReplicaClient
    breakers: Breakers
    max_attempts: int
    boot_wait_s: float
    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _outstanding: dict[str, int]
    _unhealthy: set[str]
    _draining: dict[str, asyncio.Event]
    _rng: random.Random

    # views -----------------------------------------------------------------------------------

    def ready(self) -> list[ReplicaInfo]:
        return self.view()[0]

    def booting(self) -> list[ReplicaInfo]:
        return self.view()[1]

    def view(self) -> tuple[list[ReplicaInfo], list[ReplicaInfo]]:
        """(ready, booting) in one pass: what routing reads on every request."""
        ready, booting = [], []
        unhealthy, draining, allows = self._unhealthy, self._draining, self.breakers.allows
        for r in self.provisioner.replicas():
            if r.id in draining:
                continue
            if r.state == ReplicaState.READY:
                if r.id not in unhealthy and allows(r.id):
                    ready.append(r)
            elif r.state == ReplicaState.BOOTING:
                booting.append(r)
        return ready, booting

    def draining(self) -> list[str]:
        return list(self._draining)

    @property
    def outstanding(self) -> int:
        return sum(self._outstanding.values())

    def outstanding_per_replica(self, ready: list[ReplicaInfo] | None = None) -> tuple[int, ...]:
        get = self._outstanding.get
        return tuple(get(r.id, 0) for r in (self.ready() if ready is None else ready))

    # requests --------------------------------------------------------------------------------

    def _choose(self, exclude: set[str]) -> ReplicaInfo | None:
        candidates = [r for r in self.ready() if r.id not in exclude]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        return a if self._outstanding.get(a.id, 0) <= self._outstanding.get(b.id, 0) else b

    async def _wait_for_ready(self, deadline_s: float) -> ReplicaInfo | None:
        """Wait for a booting replica to become ready, until ``deadline_s`` on the pool's clock."""
        while self._clock() < deadline_s:
            replica = self._choose(set())
            if replica is not None:
                return replica
            if not self.booting():
                return None
            await self._sleep(BOOT_POLL_S)
        return None

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        outputs: list[str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> PoolAnswer:
        deadline = self._clock() + (timeout_s if timeout_s else self.boot_wait_s)
        tried: set[str] = set()
        last: ReplicaError | None = None
        resent = False
        for attempt in range(1, self.max_attempts + 1):
            replica = self._choose(tried)
            if replica is None and not tried and self.booting():
                replica = await self._wait_for_ready(deadline)
                if replica is None:
                    raise NoReplicaError("no VM replica became ready in time")
            if replica is None:
                break
            remaining_s = deadline - self._clock()
            if remaining_s <= 0:
                raise ReplicaError("the request's deadline passed before a replica took it", 504)
            tried.add(replica.id)
            try:
                return await self._send(
                    replica,
                    attempt,
                    model,
                    inputs,
                    outputs,
                    request_id,
                    remaining_s if timeout_s else None,
                )
            except ReplicaError as exc:
                if exc.connect:
                    self._unhealthy.add(replica.id)
                elif exc.status in (502, 503) and not resent and not exc.expired:
                    resent = True  # it died (or drains) under the request: once elsewhere
                else:
                    raise
                last = exc
        if last is not None:
            raise NoReplicaError(f"no replica could take the request: {last}")
        raise NoReplicaError("no VM replica is ready")

    async def _send(
        self,
        replica: ReplicaInfo,
        attempt: int,
        model,
        inputs,
        outputs,
        request_id,
        timeout_s: float | None,
    ) -> PoolAnswer:
        rid = replica.id
        ahead = self._outstanding.get(rid, 0)
        self._outstanding[rid] = ahead + 1
        self.breakers.on_attempt(rid)
        start = time.perf_counter()
        try:
            result, batch = await self.client.infer_reported(
                replica.url, model, inputs, outputs, request_id, timeout_s
            )
        except ReplicaError as exc:
            # unreachable or dropped the request: its circuit counts it. A timeout (504) does
            # not: an overloaded replica is slow, not dead, and taking it out makes it worse
            if exc.connect or (exc.status in (502, 503) and not exc.expired):
                self.breakers.on_failure(rid)
            elif exc.status < 500:  # it answered (the request's own fault): it is alive
                self.breakers.on_success(rid)
            else:
                self.breakers.on_other(rid)
            raise
        except BaseException:  # cancelled (its caller went away) or our own bug
            self.breakers.on_other(rid)
            raise
        finally:
            left = self._outstanding.get(rid, 1) - 1
            self._outstanding[rid] = left
            if left == 0 and rid in self._draining:
                self._draining[rid].set()
        self.breakers.on_success(rid)
        service_ms = (time.perf_counter() - start) * 1000.0
        return PoolAnswer(result, rid, attempt, service_ms, ahead, batch)
