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
    started_at_s: float


@runtime_checkable
class Provisioner(Protocol):
    """Boots and stops model-server replicas. ``scale_to`` returns at once; booting is async."""

    async def scale_to(self, count: int) -> None: ...

    def replicas(self) -> list[ReplicaInfo]: ...

    async def close(self) -> None: ...
