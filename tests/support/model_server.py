"""A model server process (``tidegate model-server``) on port 0: the kernel picks the port at
bind (a port found free earlier may be taken by then, by another test's server or client), and
the server's ready line in its log says which."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.announced import MODEL_SERVER, announced_url, log_offset
from vmpool.procs import model_server_command, spawn_sync

ROOT = Path(__file__).resolve().parents[2]


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
    offset = log_offset(log_path)
    proc = spawn_sync(
        model_server_command(repo, 0, models=models, extra=extra),
        cwd=ROOT,
        log_path=log_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        return proc, announced_url(log_path, offset, proc, MODEL_SERVER)
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise
