"""Child processes that die with their parent: spawn, poll health, stop. The one place for it.

Every server process Tidegate starts (model servers, the local function runtime, function
instances) goes through ``spawn``: a new session (its own process group, so a stop reaches its
children) and, on Linux, ``PR_SET_PDEATHSIG`` = SIGKILL, so a SIGKILL of the parent takes the
child down with it at once (measured before this: 10 to 19 orphans, 4-5 GB, after ``kill -9``
of ``tidegate serve``). Where prctl is missing, ``watch_parent`` (called at the child's start)
polls the parent pid instead.

Note: Linux sends the parent-death signal when the *thread* that forked the child exits, so spawn
from the event-loop thread (as asyncio does), never from a short-lived worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

# not TIDEGATE_*: settings reject unknown variables with that prefix
PARENT_PID_ENV = "_TIDEGATE_PARENT_PID"
_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: dlopen after fork in a threaded process may deadlock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_SPAWNED: set[int] = set()  # process-group ids of live children (for kill_spawned)


class SpawnError(RuntimeError):
    """A child exited or stayed unhealthy before it was ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def model_server_command(
    repo: str | Path,
    port: int,
    *,
    threads: int = 1,
    host: str | None = None,
    models: list[str] | tuple[str, ...] = (),
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The command line of one model server (``tidegate model-server``) for ``spawn``: the pool's
    local replicas, the benchmarks and the tests all start it this way."""
    args = [sys.executable, "-m", "ops", "model-server", "--repo", str(repo), "--port", str(port)]
    args += ["--threads", str(threads)] + (["--host", host] if host else [])
    for model in models:
        args += ["--model", model]
    return [*args, *extra]


def die_with_parent(parent_pid: int | None = None):
    """A ``preexec_fn``: SIGKILL this child when its parent dies (Linux), or no-op elsewhere."""
    parent_pid = parent_pid or os.getpid()

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(70)

    return preexec


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) plus the parent pid the child's watchdog checks."""
    return {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}


def watch_parent(poll_s: float = 1.0) -> None:
    """Fallback for platforms without prctl: exit when the parent named in the env is gone."""
    expected = os.environ.get(PARENT_PID_ENV)
    if not expected or _LIBC is not None:
        return

    def loop() -> None:
        while os.getppid() == int(expected):
            time.sleep(poll_s)
        os._exit(70)

    threading.Thread(target=loop, name="parent-watchdog", daemon=True).start()


def _open_log(log_path: str | Path | None):
    if log_path is None:
        return None
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    return open(log_path, "ab")


@contextlib.contextmanager
def _child_options(env, log_path, cwd, pass_fds) -> Iterator[dict[str, Any]]:
    """What every child gets, for ``spawn`` and ``spawn_sync`` alike: no stdin, output to the
    log or nowhere, its own session, death with us. The parent's copy of the log closes after."""
    log = _open_log(log_path)
    try:
        yield {
            "stdin": subprocess.DEVNULL,
            "stdout": log or subprocess.DEVNULL,
            "stderr": subprocess.STDOUT if log else subprocess.DEVNULL,
            "env": child_env(env),
            "cwd": cwd,
            "pass_fds": pass_fds,
            "start_new_session": True,
            "preexec_fn": die_with_parent(),
        }
    finally:
        if log:
            log.close()


async def spawn(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    log_path: str | Path | None = None,
    cwd: str | Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> asyncio.subprocess.Process:
    """Start ``args`` in its own session, dying with us; output to ``log_path`` or nowhere."""
    with _child_options(env, log_path, cwd, pass_fds) as options:
        proc = await asyncio.create_subprocess_exec(*args, **options)
    _SPAWNED.add(proc.pid)
    return proc


def spawn_sync(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    log_path: str | Path | None = None,
    cwd: str | Path | None = None,
    pass_fds: tuple[int, ...] = (),
    user: str | None = None,
) -> subprocess.Popen:
    """``spawn`` for synchronous callers (tests, fixtures); ``user`` switches uid first."""
    with _child_options(env, log_path, cwd, pass_fds) as options:
        # preexec_fn runs after the uid change
        proc = subprocess.Popen(args, user=user, group=_group_of(user), **options)
    _SPAWNED.add(proc.pid)
    return proc


def _group_of(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


async def wait_healthy(
    proc: asyncio.subprocess.Process, url: str, *, timeout_s: float, interval_s: float = 0.1
) -> None:
    """Poll ``url`` until it answers 200; ``SpawnError`` if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SpawnError(f"process exited with {proc.returncode} before {url} was ready")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(interval_s)
    raise SpawnError(f"{url} not ready after {timeout_s:g} s")


def wait_healthy_sync(
    proc: subprocess.Popen | None, url: str, *, timeout_s: float, interval_s: float = 0.1
) -> None:
    """``wait_healthy`` for synchronous callers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SpawnError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet: refused, reset, 503, timeout
            pass
        time.sleep(interval_s)
    raise SpawnError(f"{url} not ready after {timeout_s:g} s")


async def spawn_healthy(
    args: list[str], health_url: str, *, timeout_s: float, **spawn_args
) -> asyncio.subprocess.Process:
    """``spawn`` then ``wait_healthy``; on failure the child's group is killed, then raised."""
    proc = await spawn(args, **spawn_args)
    try:
        await wait_healthy(proc, health_url, timeout_s=timeout_s)
    except BaseException:
        await stop(proc, grace_s=0)
        raise
    return proc


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (the child and whatever it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _SPAWNED.discard(pid)


async def stop(
    proc: asyncio.subprocess.Process, *, grace_s: float = 15.0, sig: int = signal.SIGTERM
) -> int:
    """Ask ``proc`` to stop with ``sig``; after ``grace_s`` kill its whole group. Its status."""
    if proc.returncode is None and grace_s > 0:
        try:
            proc.send_signal(sig)
            return await asyncio.wait_for(proc.wait(), grace_s)
        except (ProcessLookupError, asyncio.TimeoutError):
            pass
        finally:
            if proc.returncode is not None:
                kill_group(proc.pid)  # its own children, if any outlived it
    kill_group(proc.pid)
    return await proc.wait()


def kill_spawned() -> None:
    """SIGKILL the groups of every child still alive (a supervisor's last act on any exit)."""
    for pid in list(_SPAWNED):
        kill_group(pid)
