"""Keeps the embedded function runtime alive: start it (dying with us), register the functions,
and when it dies, say so at once (readiness, circuit breaker) and start a new one."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from vmpool import procs

log = logging.getLogger("tidegate.burst")

_ROOT = Path(__file__).resolve().parents[1]


class RuntimeDown(Exception):
    """The local function runtime could not be (re)started."""


class LocalRuntimeSupervisor:
    """``functions(endpoint)`` gives the CreateFunction bodies to register on a (new) runtime;
    ``on_change(endpoint or None)`` is told when it goes down (None) and comes back."""

    def __init__(
        self,
        *,
        functions: Callable[[str], list[dict]],
        on_change: Callable[[str | None], Awaitable[None]],
        concurrency: int,
        keep_alive_s: float,
        memory_budget_mb: int | None = None,
        log_dir: Path | None = None,
        start_timeout_s: float = 60.0,
        restart_backoff_s: float = 0.5,
    ):
        self._functions = functions
        self._on_change = on_change
        self.concurrency = concurrency
        self.keep_alive_s = keep_alive_s
        self.memory_budget_mb = memory_budget_mb
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.restart_backoff_s = restart_backoff_s
        self.endpoint: str | None = None
        self.restarts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task | None = None
        self._closing = False

    @property
    def healthy(self) -> bool:
        return self.endpoint is not None and self.proc is not None and self.proc.returncode is None

    async def start(self) -> str:
        endpoint = await self._launch()
        self._watcher = asyncio.create_task(self._watch(), name="function-runtime-supervisor")
        self._watcher.add_done_callback(_log_crash)
        return endpoint

    async def _launch(self) -> str:
        port = procs.free_port()
        args = [
            sys.executable,
            "-m",
            "ops",
            "function-runtime",
            "--port",
            str(port),
            "--concurrency",
            str(self.concurrency),
            "--keep-alive-s",
            str(self.keep_alive_s),
        ]
        if self.memory_budget_mb:
            args += ["--memory-budget-mb", str(self.memory_budget_mb)]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        endpoint = f"http://127.0.0.1:{port}"
        log_path = self.log_dir / "function-runtime.log" if self.log_dir else None
        try:
            self.proc = await procs.spawn_healthy(
                args,
                endpoint + "/health",
                env=env,
                log_path=log_path,
                timeout_s=self.start_timeout_s,
            )
            await self._register(endpoint)
        except (procs.SpawnError, aiohttp.ClientError, OSError) as exc:
            if self.proc is not None:
                await procs.stop(self.proc, grace_s=0)
            raise RuntimeDown(f"the local function runtime did not start: {exc}") from exc
        self.endpoint = endpoint
        return endpoint

    async def _register(self, endpoint: str) -> None:
        await register_functions(endpoint, self._functions(endpoint))

    async def _watch(self) -> None:
        while not self._closing:
            code = await self.proc.wait()
            if self._closing:
                return
            log.error("the local function runtime exited (status %s); restarting it", code)
            self.endpoint = None
            await self._on_change(None)
            delay_s = self.restart_backoff_s
            while not self._closing:
                try:
                    endpoint = await self._launch()
                    break
                except RuntimeDown as exc:
                    log.error("%s; trying again in %.1f s", exc, delay_s)
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 30.0)
            else:
                return
            self.restarts += 1
            log.warning(
                "the local function runtime is back at %s (restart %d)", endpoint, self.restarts
            )
            await self._on_change(endpoint)

    async def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        if self.proc is not None:
            await procs.stop(self.proc)
        self.endpoint = None


async def register_functions(endpoint: str, bodies: list[dict]) -> None:
    """CreateFunction each body on a Lambda-compatible endpoint; one already there is kept."""
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(f"{endpoint}/2015-03-31/functions", json=body) as resp:
                if resp.status not in (200, 201, 409):  # 409: registered by an earlier start
                    raise RuntimeDown(
                        f"cannot register function {body['FunctionName']}: "
                        f"HTTP {resp.status} {await resp.text()}"
                    )


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the function runtime supervisor crashed", exc_info=task.exception())
