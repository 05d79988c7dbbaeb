"""The seam between the pool and whatever boots VMs (local processes, EC2, Kubernetes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable


class ReplicaState(str, Enum):
    BOOTING = "booting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass
class ReplicaInfo:
    id: str
    url: str  # base URL of the model server, e.g. http://127.0.0.1:8101
    state: ReplicaState
    started_at_s: float  # time.monotonic() when it was asked for
    ready_at_s: float | None = None  # time.monotonic() when it was first seen ready


LIVE_STATES = (ReplicaState.BOOTING, ReplicaState.READY)


@runtime_checkable
class Provisioner(Protocol):
    """Boots and stops model-server replicas. ``scale_to`` returns at once; booting is async.

    The pool drives it: ``scale_to`` to grow (or to shrink, stopping booting replicas first),
    ``drain`` to stop one replica the pool has already drained of requests, ``mark_failed`` when
    the pool saw a replica die. ``boot_failures`` counts replicas that never became ready, so the
    pool can back off; ``expected_boot_s`` is how long a replica takes before the fleet learned it.
    """

    boot_failures: int
    expected_boot_s: float

    async def scale_to(self, count: int) -> None: ...

    async def drain(self, replica_id: str) -> None: ...

    def mark_failed(self, replica_id: str) -> None: ...

    def replicas(self) -> list[ReplicaInfo]: ...

    async def close(self) -> None: ...
