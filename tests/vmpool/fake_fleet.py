"""An in-memory provisioner and replica client for pool and control-loop tests (no network)."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np

from policies.state import ManualClock
from vmpool.client import ReplicaError
from vmpool.provisioners.base import ReplicaInfo, ReplicaState


class FakeProvisioner:
    """Replicas boot when the test says so (``boot_all``), or fail at once (``fail_boots``)."""

    expected_boot_s = 20.0

    def __init__(self, clock: ManualClock | None = None, *, fail_boots: bool = False):
        self.clock = clock or ManualClock()
        self.fail_boots = fail_boots
        self.boot_failures = 0
        self.scale_calls: list[int] = []
        self.drained: list[tuple[str, int]] = []  # (replica id, its requests in flight then)
        self.failed: list[str] = []
        self._replicas: dict[str, ReplicaInfo] = {}
        self._ids = itertools.count(1)
        self.client: FakeClient | None = None

    def replicas(self) -> list[ReplicaInfo]:
        return list(self._replicas.values())

    async def scale_to(self, count: int) -> None:
        self.scale_calls.append(count)
        live = [
            r
            for r in self._replicas.values()
            if r.state in (ReplicaState.BOOTING, ReplicaState.READY)
        ]
        for _ in range(count - len(live)):
            rid = f"fake-{next(self._ids)}"
            if self.fail_boots:
                self.boot_failures += 1
                continue
            self._replicas[rid] = ReplicaInfo(
                rid, f"http://{rid}", ReplicaState.BOOTING, self.clock.now()
            )
        for r in sorted(live, key=lambda r: r.state == ReplicaState.READY)[
            : max(len(live) - count, 0)
        ]:
            self._replicas.pop(r.id)

    def boot_all(self) -> None:
        for r in self._replicas.values():
            if r.state == ReplicaState.BOOTING:
                r.state, r.ready_at_s = ReplicaState.READY, self.clock.now()

    async def drain(self, replica_id: str) -> None:
        busy = self.client.in_flight.get(f"http://{replica_id}", 0) if self.client else 0
        self.drained.append((replica_id, busy))
        self._replicas.pop(replica_id, None)

    def mark_failed(self, replica_id: str) -> None:
        self.failed.append(replica_id)
        self._replicas.pop(replica_id, None)

    async def close(self) -> None:
        self._replicas.clear()


class FakeClient:
    """Answers identity; ``hold`` keeps requests in flight until released; ``die`` makes a
    replica drop requests as a crashed server does."""

    def __init__(self):
        self.in_flight: dict[str, int] = {}
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.dead: set[str] = set()
        self.slow: set[str] = set()  # answers with a timeout (504), as an overloaded replica
        self.refuse: set[str] = set()

    async def infer(self, url, model, inputs, outputs=None, request_id=None, timeout_s=None):
        self.calls.append(url)
        if url in self.refuse:
            raise ReplicaError(f"cannot connect to {url}", 503, connect=True, retryable=True)
        self.in_flight[url] = self.in_flight.get(url, 0) + 1
        try:
            await self.gate.wait()
            if url in self.dead:
                raise ReplicaError(f"replica {url} failed: Server disconnected", 502)
            if url in self.slow:
                raise ReplicaError(f"replica {url} did not answer in time", 504)
            return {k: np.asarray(v) for k, v in inputs.items()}
        finally:
            self.in_flight[url] -= 1

    async def infer_reported(
        self, url, model, inputs, outputs=None, request_id=None, timeout_s=None
    ):
        # a replica that does not report its batches (as another OIP server)
        return await self.infer(url, model, inputs, outputs, request_id, timeout_s), None

    async def close(self) -> None:
        return None
