"""Process helpers the benchmarks share: start a server with its log, wait until it answers
HTTP, stop it, and read the CPU time it has used."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    """Until ``url`` answers 200; RuntimeError if ``proc`` exits first or time runs out."""
    from vmpool.procs import wait_healthy_sync

    wait_healthy_sync(proc, url, timeout_s=timeout_s, interval_s=0.3)


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def work_dir(prefix: str) -> Path:
    """A scratch directory for one benchmark run (exports, stores, logs), removed when the
    process exits: a burst benchmark leaves gigabytes of tensors and weights behind otherwise.
    ``TIDEGATE_BENCH_KEEP=1`` keeps it (its path is printed) to read the logs after a failure."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("TIDEGATE_BENCH_KEEP"):
        print(f"scratch directory kept: {path}", flush=True)
    else:
        atexit.register(shutil.rmtree, path, True)
    return path
