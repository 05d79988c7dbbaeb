"""Local provisioner: model servers as subprocesses, with a boot delay like a real VM."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from .base import ReplicaInfo, ReplicaState

log = logging.getLogger("tidegate.provisioner")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Replica:
    def __init__(self, info: ReplicaInfo):
        self.info = info
        self.process: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task | None = None


class LocalProvisioner:
    """Starts ``tidegate model-server`` processes on loopback.

    ``boot_delay_s`` is waited before the process starts, so a replica takes at least that long to
    become ready, as a VM does; the real process start and model load come on top.
    """

    def __init__(self, repo: str | Path, *, models: list[str] | None = None, threads: int = 1,
                 boot_delay_s: float = 0.0, host: str = "127.0.0.1", log_dir: str | Path | None = None,
                 ready_timeout_s: float = 120.0, drain_timeout_s: float = 30.0,
                 extra_args: list[str] | None = None):
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

    def replicas(self) -> list[ReplicaInfo]:
        return [r.info for r in self._replicas.values()]

    async def scale_to(self, count: int) -> None:
        if count < 0:
            raise ValueError("replica count must be >= 0")
        live = [r for r in self._replicas.values()
                if r.info.state in (ReplicaState.BOOTING, ReplicaState.READY)]
        for _ in range(count - len(live)):
            self._start_one()
        if len(live) > count:
            # Stop booting replicas first, then the youngest ready ones.
            victims = sorted(live, key=lambda r: (r.info.state == ReplicaState.READY,
                                                  -r.info.started_at_s))[: len(live) - count]
            for r in victims:
                r.info.state = ReplicaState.STOPPING
                asyncio.get_running_loop().create_task(self._stop(r))

    def _start_one(self) -> None:
        rid = f"local-{next(self._ids)}"
        port = free_port(self.host)
        info = ReplicaInfo(rid, f"http://{self.host}:{port}", ReplicaState.BOOTING, time.monotonic())
        replica = _Replica(info)
        self._replicas[rid] = replica
        replica.task = asyncio.get_running_loop().create_task(self._boot(replica, port))

    async def _boot(self, replica: _Replica, port: int) -> None:
        try:
            if self.boot_delay_s > 0:
                await asyncio.sleep(self.boot_delay_s)
            if replica.info.state != ReplicaState.BOOTING:
                return
            args = [sys.executable, "-m", "ops", "model-server", "--repo", str(self.repo),
                    "--host", self.host, "--port", str(port), "--threads", str(self.threads),
                    *self.extra_args]
            for m in self.models or []:
                args += ["--model", m]
            log_file = None
            if self.log_dir:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log_file = open(self.log_dir / f"{replica.info.id}.log", "ab")
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
            replica.process = await asyncio.create_subprocess_exec(
                *args, stdout=log_file or asyncio.subprocess.DEVNULL,
                stderr=log_file or asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
            if log_file:
                log_file.close()
            if await self._wait_ready(replica):
                replica.info.state = ReplicaState.READY
            else:
                replica.info.state = ReplicaState.FAILED
                self.boot_failures += 1
                log.warning("replica %s failed to become ready (log: %s)", replica.info.id,
                            self.log_dir / f"{replica.info.id}.log" if self.log_dir else "none")
                await self._kill(replica)
                self._replicas.pop(replica.info.id, None)
        except asyncio.CancelledError:
            await self._kill(replica)
            raise

    async def _wait_ready(self, replica: _Replica) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        url = replica.info.url + "/v2/health/ready"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if replica.process.returncode is not None:
                    return False
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return True
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        return False

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
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    def mark_failed(self, replica_id: str) -> None:
        """The pool saw this replica die: forget it so ``scale_to`` replaces it."""
        replica = self._replicas.get(replica_id)
        if replica:
            replica.info.state = ReplicaState.FAILED
            asyncio.get_running_loop().create_task(self._stop(replica))

    async def close(self) -> None:
        await asyncio.gather(*(self._stop(r) for r in list(self._replicas.values())),
                             return_exceptions=True)
