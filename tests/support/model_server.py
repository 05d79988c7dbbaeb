"""A model server process (``tidegate model-server``) on port 0: the kernel picks the port at
bind (a port found free earlier may be taken by then, by another test's server or client), and
the server's ready line in its log says which."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from vmpool.procs import model_server_command, spawn_sync

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(rb"tidegate model-server ready on (http://127\.0\.0\.1:\d+) ")


def spawn_model_server(
    repo: Path,
    log_path: Path,
    *,
    models: tuple[str, ...] | list[str] = (),
    extra: tuple[str, ...] | list[str] = (),
) -> tuple[subprocess.Popen, str]:
    """Start one (one thread) on ``repo``, logging to ``log_path``: (process, base URL) once it
    has said it listens. The caller still waits for readiness and stops it."""
    log_path = Path(log_path)
    offset = log_path.stat().st_size if log_path.exists() else 0  # (the log is appended to)
    proc = spawn_sync(
        model_server_command(repo, 0, models=models, extra=extra),
        cwd=ROOT,
        log_path=log_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        return proc, _announced_url(log_path, offset, proc)
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise


def _announced_url(log_path: Path, offset: int, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300  # a bound, not a timing: torch's import on a busy host
    while not (found := _READY.search(log_path.read_bytes()[offset:])):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_bytes()[offset:][-2000:].decode(errors="replace")
            raise RuntimeError(f"model server not ready (exit code {proc.poll()}): {tail}")
        time.sleep(0.05)
    return found.group(1).decode()
