"""The pool of full-model replicas: health, replica choice, failover, draining, boot waits.

Replica choice and retries live in ``pool_routing`` (re-exported here); this module keeps the
fleet's lifecycle: scaling, draining, the health loop and boot times.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable

import aiohttp

from .breaker import Breakers
from .client import ReplicaClient, ReplicaError
from .health import BootBackoff, probe
from .pool_routing import BOOT_POLL_S, NoReplicaError, PoolAnswer, ReplicaRouting
from .provisioners.base import LIVE_STATES, Provisioner, ReplicaInfo, ReplicaState

__all__ = [
    "BOOT_POLL_S",
    "NoReplicaError",
    "PoolAnswer",
    "PoolError",
    "ReplicaPool",
    "ReplicaRouting",
]

log = logging.getLogger("tidegate.pool")
LIVE_MISSES = 3  # health ticks in a row a replica's live probe fails before it is replaced


class PoolError(Exception):
    """The pool's own machinery failed (its health loop died)."""


class ReplicaPool(ReplicaRouting):
    """The replica fleet: scaling, draining, health checks, boot times; requests are routed by
    ``ReplicaRouting`` (two random choices, failover, a wait for the first replica to boot, as
    Knative's activator buffers during a cold start). Scale-in drains a replica before it is
    stopped. ``clock`` and ``sleep`` are injectable so the timing logic is testable.
    """

    def __init__(
        self,
        provisioner: Provisioner,
        client: ReplicaClient | None = None,
        *,
        health_interval_s: float = 1.0,
        max_attempts: int = 3,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        breakers: Breakers | None = None,
        drain_timeout_s: float = 60.0,
        boot_wait_s: float = 120.0,
        max_boot_backoff_s: float = 60.0,
        max_health_crashes: int = 10,
    ):
        self.provisioner = provisioner
        self.client = client or ReplicaClient()
        self.health_interval_s = health_interval_s
        self.max_attempts = max_attempts
        self.drain_timeout_s = drain_timeout_s
        self.boot_wait_s = boot_wait_s
        self.max_boot_backoff_s = max_boot_backoff_s
        self.max_health_crashes = max_health_crashes
        self._clock, self._sleep = clock, sleep
        self.breakers = breakers or Breakers(clock=clock)
        self._outstanding: dict[str, int] = {}
        self._unhealthy: set[str] = set()
        self._gone_urls: set[str] = set()  # said once per outage, not on every health tick
        self._draining: dict[str, asyncio.Event] = {}  # replica id -> set when it has no requests
        self._tasks: set[asyncio.Task] = set()
        self._boot_seen: set[str] = set()
        self._live_misses: dict[str, int] = {}  # replica id -> live probes failed in a row
        self._listed_urls: set[str] = set()  # the provisioner's replicas at the last health tick
        # replica id -> repository calls (model, "load" | "unload") it missed, out of rotation
        self._missed: dict[str, list[tuple[str, str]]] = {}
        self._boot_times_s: deque[float] = deque(maxlen=20)
        self._rng = random.Random(seed)
        self._health_task: asyncio.Task | None = None
        self.health_crashes = 0
        self.desired = 0

    async def start(self, replicas: int) -> None:
        await self.scale_to(replicas)
        self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    # scaling ---------------------------------------------------------------------------------

    async def scale_to(self, count: int) -> None:
        """Keep ``count`` replicas. Shrinking stops booting replicas first, then drains the least
        loaded ready ones (they finish their requests, get no new ones) before stopping them."""
        if count < 0:
            raise ValueError("replica count must be >= 0")
        self.desired = count
        live = [
            r
            for r in self.provisioner.replicas()
            if r.state in LIVE_STATES and r.id not in self._draining
        ]
        excess = len(live) - count
        victims: list[ReplicaInfo] = []
        if excess > 0:
            victims = sorted(
                live,
                key=lambda r: (
                    r.state == ReplicaState.READY,
                    self._outstanding.get(r.id, 0),
                    -r.started_at_s,
                ),
            )[:excess]
            for r in victims:
                self._draining[r.id] = asyncio.Event()  # out of rotation from now on
        # the fleet's count first, then the drains (each stops its replica and lowers the count
        # by one): the other order could undo a drain's decrement
        await self.provisioner.scale_to(count + len(self._draining))
        for r in victims:
            self._spawn(self._drain(r.id))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pool task failed", exc_info=task.exception())

    async def _drain(self, replica_id: str) -> None:
        idle = self._draining[replica_id]
        if self._outstanding.get(replica_id, 0) == 0:
            idle.set()
        try:
            await asyncio.wait_for(idle.wait(), self.drain_timeout_s)
        except asyncio.TimeoutError:
            log.warning(
                "replica %s still busy after %.0f s of draining; stopping it",
                replica_id,
                self.drain_timeout_s,
            )
        try:
            await self.provisioner.drain(replica_id)
        finally:
            self._draining.pop(replica_id, None)
            self._outstanding.pop(replica_id, None)
            self.breakers.forget(replica_id)

    @property
    def expected_boot_s(self) -> float:
        """Median of the boot times seen, else what the provisioner expects."""
        if self._boot_times_s:
            return statistics.median(self._boot_times_s)
        return self.provisioner.expected_boot_s

    def boot_remaining_s(self, booting: list[ReplicaInfo] | None = None) -> float:
        """Until the oldest booting replica is expected ready (0 when none boots)."""
        booting = self.booting() if booting is None else booting
        if not booting:
            return 0.0
        age = self._clock() - min(r.started_at_s for r in booting)
        return max(self.expected_boot_s - age, 0.0)

    # health ----------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        """Probe replicas and keep the desired count. A crash is logged and the loop restarts;
        after ``max_health_crashes`` in a row it gives up and ``close`` raises it."""
        crashes_in_row = 0
        while True:
            try:
                timeout = aiohttp.ClientTimeout(total=max(self.health_interval_s, 0.5))
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    checker = BootBackoff(self)
                    while True:
                        await self._sleep(self.health_interval_s)
                        await self._health_tick(session, checker)
                        crashes_in_row = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                self.health_crashes += 1
                crashes_in_row += 1
                log.exception(
                    "replica health loop crashed (%d in a row); restarting", crashes_in_row
                )
                if crashes_in_row >= self.max_health_crashes:
                    raise
                await self._sleep(min(self.health_interval_s * 2**crashes_in_row, 30.0))

    async def _health_tick(self, session: aiohttp.ClientSession, backoff: BootBackoff) -> None:
        listed = self.provisioner.replicas()
        self._forget_gone({r.id for r in listed}, {r.url for r in listed})
        for r in [r for r in listed if r.state == ReplicaState.READY]:
            if r.id not in self._boot_seen:
                self._boot_seen.add(r.id)
                if r.ready_at_s is not None:
                    self._boot_times_s.append(r.ready_at_s - r.started_at_s)
            if await probe(session, r.url) and await self._catch_up(r):
                self._unhealthy.discard(r.id)
                self._live_misses.pop(r.id, None)
                if r.url in self._gone_urls:
                    self._gone_urls.discard(r.url)
                    log.warning("replica %s (%s) answers again", r.id, r.url)
                continue
            self._unhealthy.add(r.id)
            if await probe(session, r.url + "/v2/health/live", raw=True):
                self._live_misses.pop(r.id, None)
                continue
            # replaced after LIVE_MISSES ticks in a row: one slow answer (a busy or starved host)
            # once killed a working replica, the only one, under the load it was serving
            self._live_misses[r.id] = misses = self._live_misses.get(r.id, 0) + 1
            if misses < LIVE_MISSES:
                continue
            if r.url not in self._gone_urls:  # a fleet address that stays down: once
                self._gone_urls.add(r.url)
                log.warning("replica %s (%s) is gone; replacing it", r.id, r.url)
            self.provisioner.mark_failed(r.id)
        await backoff.keep_desired()

    # the model repository ------------------------------------------------------------------

    def out_of_rotation(self) -> list[ReplicaInfo]:
        """Ready replicas that take no requests now (unhealthy, or their circuit open)."""
        ready = {r.id for r in self.ready()}
        return [
            r
            for r in self.provisioner.replicas()
            if r.state == ReplicaState.READY and r.id not in ready and r.id not in self._draining
        ]

    def missed(self, replica_id: str, model: str, action: str) -> None:
        """``replica_id`` could not be told to ``action`` ("load" | "unload") ``model``: it takes
        no requests until the health loop has told it (it would serve the old model, or none)."""
        self._missed.setdefault(replica_id, []).append((model, action))
        self._unhealthy.add(replica_id)

    async def _catch_up(self, r: ReplicaInfo) -> bool:
        """The repository calls ``r`` missed, in order; False while one still fails."""
        missed = self._missed.get(r.id)
        while missed:
            model, action = missed[0]
            try:
                await self.client.repository(r.url, model, action)
            except ReplicaError as exc:
                if not 400 <= exc.status < 500:  # (a 4xx: the model's own, not the replica's)
                    log.warning("replica %s cannot %s %s yet: %s", r.id, action, model, exc)
                    return False
            missed.pop(0)
        self._missed.pop(r.id, None)
        return True

    def _forget_gone(self, ids: set[str], urls: set[str]) -> None:
        """What the pool kept of replicas the provisioner no longer lists (failed and replaced,
        or stopped): kept, each replacement or scale-down grew these for as long as it ran."""
        self._boot_seen &= ids
        self._live_misses = {k: n for k, n in self._live_misses.items() if k in ids}
        self._unhealthy &= ids
        self._missed = {k: calls for k, calls in self._missed.items() if k in ids}
        self._gone_urls &= urls
        forget = getattr(self.client, "forget", None)  # its connections, its batching state
        for url in self._listed_urls - urls if forget is not None else ():
            forget(url)
        self._listed_urls = urls
        for rid in [k for k, n in self._outstanding.items() if k not in ids and not n]:
            del self._outstanding[rid]
            self.breakers.forget(rid)

    async def close(self) -> None:
        error: BaseException | None = None
        task = self._health_task
        if task is not None:
            if task.done() and not task.cancelled():
                error = task.exception()
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # died between the check and the cancel
                    error = exc
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        await self.provisioner.close()
        if error is not None:
            raise PoolError(
                f"the replica health loop died after {self.health_crashes} crashes: {error!r}"
            ) from error
