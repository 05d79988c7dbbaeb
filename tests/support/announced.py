"""The URL a server process says it listens on, read from its log: servers started on port 0
(the kernel picks the port at bind; a port found free earlier may be taken by then, by another
test's server or any client's connection) say which port they got."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

MODEL_SERVER = re.compile(rb"tidegate model-server ready on (http://127\.0\.0\.1:\d+) ")
GATEWAY = re.compile(rb"^ready: (http://127\.0\.0\.1:\d+)$", re.M)  # `tidegate serve`, once ready
LISTENING = re.compile(rb"^listening on (http://127\.0\.0\.1:\d+)$", re.M)  # tests' own servers


def log_offset(log_path: Path) -> int:
    """Where a new process's lines will start in ``log_path`` (logs are appended to)."""
    return log_path.stat().st_size if log_path.exists() else 0


def announced_url(
    log_path: Path,
    offset: int,
    proc: subprocess.Popen,
    pattern: re.Pattern[bytes],
    bound_s: float = 300.0,
) -> str:
    """The URL ``pattern`` finds in ``log_path`` past ``offset``, once ``proc`` has written it;
    ``bound_s`` only bounds a broken server (torch's import on a busy host takes seconds)."""
    deadline = time.monotonic() + bound_s
    while not (found := pattern.search(Path(log_path).read_bytes()[offset:])):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = Path(log_path).read_bytes()[offset:][-2000:].decode(errors="replace")
            raise RuntimeError(f"no listening URL in the log (exit code {proc.poll()}): {tail}")
        time.sleep(0.05)
    return found.group(1).decode()
