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

from policies.routing.replica_choice import ModelWork, answer_ms, choose_replica

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


class ReplicaMisses(Exception):
    """The replica picked for the request answers it too late, as the caller's ``second_look``
    judged (other models' batches in the way, on a fleet of several models); nothing was sent."""

    def __init__(self, answer_ms: float):
        super().__init__(f"the replica picked answers in ~{answer_ms:.1f} ms")
        self.answer_ms = answer_ms


class _ModelCosts:
    """What each model's rows cost a replica, as ``policies.routing.replica_choice`` weighs
    them: batch times learnt from the answers' batch reports (a moving average per batch size),
    each model's largest batch and whether it computes (``describe_model``)."""

    def __init__(self) -> None:
        self.described: dict[str, tuple[int, bool]] = {}  # model -> (max_batch_size, computes)
        self.batch_ms: dict[str, dict[int, float]] = {}  # model -> rows -> service ms
        self._works: dict[str, ModelWork] = {}

    def models(self, outstanding: dict[str, dict[str, int]]) -> list[str]:
        names = set(self.described) | set(self.batch_ms)
        for per_model in outstanding.values():
            names.update(per_model)
        return sorted(names)

    def learn(self, model: str, batch: BatchReport | None) -> None:
        if batch is None or batch.rows < 1 or batch.service_ms <= 0:
            return
        curve = self.batch_ms.setdefault(model, {})
        last = curve.get(batch.rows)
        curve[batch.rows] = (
            batch.service_ms if last is None else last + 0.2 * (batch.service_ms - last)
        )
        self._works.pop(model, None)

    def work(self, model: str) -> ModelWork:
        work = self._works.get(model)
        if work is None:
            curve = self.batch_ms.get(model, {})
            top, computes = self.described.get(model, (max(curve, default=1), True))
            work = self._works[model] = ModelWork(tuple(sorted(curve.items())), top, computes)
        return work


class ReplicaRouting:
    """Sends each request to one of two random ready replicas, whichever has fewer outstanding;
    on a fleet serving several models, weighed by time per model (``_pick``).

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
    # outstanding requests per replica and model, and what each model's rows cost (made on
    # first use: ``ReplicaPool`` sets up the rest of the table)
    _by_model: dict[str, dict[str, int]] | None = None
    _costs: _ModelCosts | None = None

    def describe_model(self, model: str, max_batch_size: int, computes: bool = True) -> None:
        """``model``'s largest batch, and whether its batches hold the replica's cores (False:
        they only wait, as the ``delay`` load-test model's, and run beside the others')."""
        costs = self._model_costs()
        costs.described[model] = (max(max_batch_size, 1), computes)
        costs._works.pop(model, None)

    def weighs_models(self) -> bool:
        """Whether replica choice weighs several models' requests by time (``_pick``)."""
        return self._costs is not None and len(self._costs.models(self._by_model or {})) > 1

    def _model_costs(self) -> _ModelCosts:
        if self._costs is None:
            self._costs = _ModelCosts()
        return self._costs

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

    def _choose(self, exclude: set[str], model: str | None = None) -> ReplicaInfo | None:
        candidates = [r for r in self.ready() if r.id not in exclude]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(range(len(candidates)), 2)  # (the draws of sample(candidates))
        return candidates[self._pick(candidates, a, b, model)]

    def _pick(self, candidates: list[ReplicaInfo], a: int, b: int, model: str | None) -> int:
        """Power of two choices on outstanding requests; on a fleet serving several models,
        ``replica_choice.choose_replica``'s rule (the simulator's: ``ops/sim/shared.py``)."""
        weighed = self._weighed(candidates, model)
        if weighed is None:
            get = self._outstanding.get
            return a if get(candidates[a].id, 0) <= get(candidates[b].id, 0) else b
        held, m, works = weighed
        return choose_replica(held, m, works, a, b)

    def _answer_ms(self, replica: ReplicaInfo, model: str, rows: int) -> float | None:
        """``replica_choice.answer_ms`` of ``replica`` for ``model`` (None: one model known)."""
        weighed = self._weighed([replica], model)
        if weighed is None:
            return None
        held, m, works = weighed
        return answer_ms(held[0], m, works, rows)

    def _weighed(self, replicas: list[ReplicaInfo], model: str | None):
        """(each replica's outstanding requests per model, ``model``'s index, each model's
        ``ModelWork``) on a fleet of several models; None on one (rows alone decide)."""
        by_model = self._by_model
        if model is None or self._costs is None or by_model is None:
            return None
        models = self._costs.models(by_model)
        if len(models) < 2 or model not in models:
            return None
        held = []
        for r in replicas:
            per_model = by_model.get(r.id, {})
            held.append([per_model.get(m, 0) for m in models])
        return held, models.index(model), [self._costs.work(m) for m in models]

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
        second_look: Callable[[float], bool] | None = None,
    ) -> PoolAnswer:
        """``second_look(answer_ms)``, on a fleet of several models: asked with the predicted
        answer of the replica picked (``replica_choice.answer_ms``); True raises ReplicaMisses
        instead of sending (the simulator's ``SharedSimulation._misses``)."""
        deadline = self._clock() + (timeout_s if timeout_s else self.boot_wait_s)
        tried: set[str] = set()
        last: ReplicaError | None = None
        resent = False
        for attempt in range(1, self.max_attempts + 1):
            replica = self._choose(tried, model)
            if replica is None and not tried and self.booting():
                replica = await self._wait_for_ready(deadline)
                if replica is None:
                    raise NoReplicaError("no VM replica became ready in time")
            if replica is None:
                break
            remaining_s = deadline - self._clock()
            if remaining_s <= 0:
                raise ReplicaError("the request's deadline passed before a replica took it", 504)
            if second_look is not None and not tried:
                ms = self._answer_ms(replica, model, _rows_of(inputs))
                if ms is not None and second_look(ms):
                    raise ReplicaMisses(ms)
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
        if self._by_model is None:
            self._by_model = {}
        per_model = self._by_model.setdefault(rid, {})
        per_model[model] = per_model.get(model, 0) + 1
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
            per_model[model] -= 1
            if not per_model[model]:
                del per_model[model]
                if not per_model:  # (a replica that goes leaves nothing behind)
                    self._by_model.pop(rid, None)
            if left == 0 and rid in self._draining:
                self._draining[rid].set()
        self.breakers.on_success(rid)
        self._model_costs().learn(model, batch)
        service_ms = (time.perf_counter() - start) * 1000.0
        return PoolAnswer(result, rid, attempt, service_ms, ahead, batch)


def _rows_of(inputs: dict[str, np.ndarray]) -> int:
    for array in inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 1
