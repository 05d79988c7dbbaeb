"""SIGKILL of `tidegate serve` mid-load: every answered request has its ledger row, no orphans.

Before: rows waited in memory for up to 0.2 s (97 of 102 answered requests had a row after a
kill -9), and the model server, function runtime and 10 to 19 function instances kept running.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.ledger import Ledger
from tests.support.announced import GATEWAY, announced_url, log_offset
from vmpool.procs import kill_group, spawn_sync, wait_healthy_sync

ROOT = Path(__file__).resolve().parents[2]
BODY = (
    b'{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":['
    + b",".join([b"0.5"] * 784)
    + b"]}]}"
)


def _serve(data: Path, env: dict[str, str], log: Path):
    """`tidegate serve` on port 0 (the kernel's pick at bind): (process, base URL) once the
    gateway says it is ready."""
    env = {
        **os.environ,
        "TIDEGATE_DEMO_MODEL": "mlp",
        "TIDEGATE_VM__THREADS": "1",
        "TIDEGATE_GRPC_PORT": "-1",
        "TIDEGATE_BURST__DEFAULT_WORKERS": "2",
        **env,
    }
    offset = log_offset(log)
    proc = spawn_sync(
        [sys.executable, "-m", "ops", "serve", "--data-dir", str(data), "--port", "0"],
        env=env,
        cwd=ROOT,
        log_path=log,
    )
    try:
        url = announced_url(log, offset, proc, GATEWAY, bound_s=240)
        wait_healthy_sync(proc, f"{url}/v2/health/ready", timeout_s=240)
    except BaseException:
        kill_group(proc.pid)
        raise
    return proc, url


def _descendants(root_pid: int) -> dict[int, str]:
    """pid -> start time of every process below ``root_pid`` (start time guards pid reuse)."""
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)], starts[int(entry.name)] = int(fields[1]), fields[19]
    found, frontier = {}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = starts[child]
                frontier.append(child)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int, start: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == start and fields[0] != "Z"


class Load:
    """Client threads sending requests with unique ids; collects the ids answered 2xx."""

    def __init__(self, url: str, vm_clients: int = 4, burst_clients: int = 2):
        self.url, self.answered, self.burst_answered = url, [], 0
        self.stop = threading.Event()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(route,), daemon=True)
            for route in ["vm"] * vm_clients + ["burst"] * burst_clients
        ]

    def _client(self, route: str) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                rid = f"{route}-{next(self._ids)}"
                try:
                    resp = client.post(
                        f"{self.url}/v2/models/mlp/infer",
                        content=BODY,
                        headers={"x-request-id": rid, "x-tidegate-route": route},
                    )
                except httpx.HTTPError:
                    return  # the gateway is gone
                if 200 <= resp.status_code < 300:
                    with self._lock:
                        self.answered.append(rid)
                        self.burst_answered += route == "burst"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_load_loses_no_answered_request_and_leaves_nothing_running(
    backend, tmp_path, request
):
    env, data = {}, tmp_path / "data"
    if backend == "postgresql":
        env["TIDEGATE_LEDGER__URL"] = request.getfixturevalue("postgres_url")
    proc, url = _serve(data, env, tmp_path / "serve-1.log")
    load = Load(url)
    try:
        for thread in load.threads:
            thread.start()
        deadline = time.monotonic() + 180
        while len(load.answered) < 60 or load.burst_answered < 3:
            assert time.monotonic() < deadline, (len(load.answered), load.burst_answered)
            time.sleep(0.05)
        children = _descendants(proc.pid)
        # function instances among them, by the name their command line gives
        instances = [pid for pid in children if "tidegate-function" in _cmdline(pid)]
        names = {_comm(pid) for pid in children}  # what `pgrep -l tidegate` and `ps` show
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests are in flight
        proc.wait(30)
    finally:
        load.stop.set()
        kill_group(proc.pid)
    for thread in load.threads:
        thread.join(60)
    answered = set(load.answered)

    # a model server, the function runtime and function instances were running: none survives
    assert len(children) >= 3 and instances, children
    assert {"tidegate-model", "tidegate-fnrt", "tidegate-fn"} <= names, names
    deadline = time.monotonic() + 15
    while any(_alive(pid, start) for pid, start in children.items()):
        left = [pid for pid, start in children.items() if _alive(pid, start)]
        assert time.monotonic() < deadline, f"still running after the gateway's SIGKILL: {left}"
        time.sleep(0.1)

    # restart on the same data: it starts, and every answered request has its row
    again, _ = _serve(data, env, tmp_path / "serve-2.log")
    try:
        target = env.get("TIDEGATE_LEDGER__URL", str(data / "ledger.sqlite"))
        missing = answered - Ledger(target).ids()
        assert not missing, f"{len(missing)} of {len(answered)} answered requests have no row"
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)
