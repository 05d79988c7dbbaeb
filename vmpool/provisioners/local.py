"""Local provisioner: model servers as subprocesses, with a boot delay like a real VM."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from pathlib import Path

from ..procs import SpawnError, free_port, kill_group, model_server_command, spawn, wait_healthy
from .base import ReplicaInfo, ReplicaState

log = logging.getLogger("tidegate.provisioner")


class _Replica:
    def __init__(self, info: ReplicaInfo):
        self.info = info
        self.process: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task | None = None


class LocalProvisioner:
    """Starts ``tidegate model-server`` processes on loopback.

    ``boot_delay_s`` is waited before the process starts, so a replica takes at least that long to
    become ready, as a VM does; the real process start and model load come on top. ``threads`` is
    the torch thread count of each replica; 0 divides the machine's cores by the replicas wanted
    when it boots, so replicas do not oversubscribe the cores.
    """

    def __init__(
        self,
        repo: str | Path,
        *,
        models: list[str] | None = None,
        threads: int = 1,
        boot_delay_s: float = 0.0,
        host: str = "127.0.0.1",
        log_dir: str | Path | None = None,
        ready_timeout_s: float = 120.0,
        drain_timeout_s: float = 30.0,
        extra_args: list[str] | None = None,
    ):
        self.repo = Path(repo)
        self.models = models
        self.threads = threads
        self.boot_delay_s = boot_delay_s
        self.host = host
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout_s = ready_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.extra_args = list(extra_args or [])
        self._replicas: dict[str, _Replica] = {}
        self._ids = itertools.count(1)
        self.boot_failures = 0  # replicas that never became ready (the pool backs off on these)
        self._wanted = 0
        self._tasks: set[asyncio.Task] = set()  # stops in progress, kept referenced

    @property
    def expected_boot_s(self) -> float:
        return self.boot_delay_s + 5.0  # process start and model load on top of the delay

    def threads_per_replica(self) -> int:
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(self._wanted, 1))

    def _spawn_stop(self, replica: _Replica) -> None:
        task = asyncio.get_running_loop().create_task(self._stop(replica))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def replicas(self) -> list[ReplicaInfo]:
        return [r.info for r in self._replicas.values()]

    async def scale_to(self, count: int) -> None:
        if count < 0:
            raise ValueError("replica count must be >= 0")
        self._wanted = count
        live = [
            r
            for r in self._replicas.values()
            if r.info.state in (ReplicaState.BOOTING, ReplicaState.READY)
        ]
        for _ in range(count - len(live)):
            self._start_one()
        if len(live) > count:
            # Stop booting replicas first, then the youngest ready ones.
            victims = sorted(
                live, key=lambda r: (r.info.state == ReplicaState.READY, -r.info.started_at_s)
            )[: len(live) - count]
            for r in victims:
                r.info.state = ReplicaState.STOPPING
                self._spawn_stop(r)

    async def drain(self, replica_id: str) -> None:
        """Stop one replica the pool has drained; the fleet shrinks by one."""
        replica = self._replicas.get(replica_id)
        if replica is not None:
            self._wanted = max(self._wanted - 1, 0)
            replica.info.state = ReplicaState.STOPPING
            await self._stop(replica)

    def _start_one(self) -> None:
        rid = f"local-{next(self._ids)}"
        port = free_port(self.host)
        info = ReplicaInfo(
            rid, f"http://{self.host}:{port}", ReplicaState.BOOTING, time.monotonic()
        )
        replica = _Replica(info)
        self._replicas[rid] = replica
        replica.task = asyncio.get_running_loop().create_task(self._boot(replica, port))

    async def _boot(self, replica: _Replica, port: int) -> None:
        try:
            if self.boot_delay_s > 0:
                await asyncio.sleep(self.boot_delay_s)
            if replica.info.state != ReplicaState.BOOTING:
                return
            threads = self.threads_per_replica()
            args = model_server_command(
                self.repo,
                port,
                threads=threads,
                host=self.host,
                models=self.models or (),
                extra=self.extra_args,
            )
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            replica.process = await spawn(  # dies with the gateway, however the gateway dies
                args,
                env=env,
                log_path=self.log_dir / f"{replica.info.id}.log" if self.log_dir else None,
            )
            if await self._wait_ready(replica):
                replica.info.ready_at_s = time.monotonic()
                replica.info.state = ReplicaState.READY
            else:
                replica.info.state = ReplicaState.FAILED
                self.boot_failures += 1
                log.warning(
                    "replica %s failed to become ready (log: %s)",
                    replica.info.id,
                    self.log_dir / f"{replica.info.id}.log" if self.log_dir else "none",
                )
                await self._kill(replica)
                self._replicas.pop(replica.info.id, None)
        except asyncio.CancelledError:
            await self._kill(replica)
            raise

    async def _wait_ready(self, replica: _Replica) -> bool:
        try:
            await wait_healthy(
                replica.process,
                replica.info.url + "/v2/health/ready",
                timeout_s=self.ready_timeout_s,
            )
        except SpawnError:
            return False
        return True

    async def _stop(self, replica: _Replica) -> None:
        if replica.task and not replica.task.done():
            replica.task.cancel()
        proc = replica.process
        if proc and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # the model server drains in-flight work, then exits
            try:
                await asyncio.wait_for(proc.wait(), self.drain_timeout_s)
            except asyncio.TimeoutError:
                await self._kill(replica)
        self._replicas.pop(replica.info.id, None)

    async def _kill(self, replica: _Replica) -> None:
        proc = replica.process
        if proc and proc.returncode is None:
            kill_group(proc.pid)
            await proc.wait()

    def mark_failed(self, replica_id: str) -> None:
        """The pool saw this replica die: forget it so ``scale_to`` replaces it."""
        replica = self._replicas.get(replica_id)
        if replica:
            replica.info.state = ReplicaState.FAILED
            self._spawn_stop(replica)

    async def close(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)  # stops under way
        await asyncio.gather(
            *(self._stop(r) for r in list(self._replicas.values())), return_exceptions=True
        )
