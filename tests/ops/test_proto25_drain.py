"""`tidegate serve`'s drain at SIGTERM is the `drain_timeout_s` setting (it was uvicorn's fixed
30 s): a request in flight at the signal is answered when the drain allows it, and a gateway
whose requests outlast the drain exits once it is over, not when they end.

A real `tidegate serve` (local replica, `delay` model whose forward waits), a client over
loopback HTTP; in flight = the gateway's `tidegate_requests_in_flight` gauge says 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from vmpool.procs import die_with_parent
from vmpool.export import export_zoo

ROOT = Path(__file__).resolve().parents[2]


def _body(rows: int) -> dict:
    return {
        "inputs": [
            {"name": "input", "shape": [rows, 16], "datatype": "FP32", "data": [1.0] * 16 * rows}
        ]
    }


class _Serving:
    """`tidegate serve` on a free port (gRPC off): its URL once it says ready, its output."""

    def __init__(self, repo: Path, data: Path, drain_s: float):
        env = {
            **os.environ,
            "TIDEGATE_GRPC_PORT": "-1",
            "TIDEGATE_BURST__ENABLED": "false",
            "TIDEGATE_VM__THREADS": "1",
            "TIDEGATE_DRAIN_TIMEOUT_S": str(drain_s),
        }
        argv = ["serve", "--data-dir", str(data), "--repo", str(repo), "--port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops", *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=die_with_parent(),
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("ready: "):
                self.url = line.split()[1]
                self.ready.set()

    def output(self) -> str:
        self._reader.join(60)
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)


def _in_flight(url: str, timeout_s: float = 60.0) -> None:
    """Until the gateway counts a request in flight (a condition polled on its gauge)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            for line in client.get(url + "/metrics").text.splitlines():
                if line.startswith("tidegate_requests_in_flight ") and float(line.split()[1]) >= 1:
                    return
            time.sleep(0.05)
    raise AssertionError("the request never came in flight")


def _run(tmp_path: Path, rows: int, per_item_ms: float, drain_s: float):
    """SIGTERM while one request of ``rows`` rows (it takes rows x per_item_ms) is in flight:
    (its status or exception, seconds from the signal to the exit, the gateway's output).
    The wait is per row, not per call: the replica's warm-up (two batch-1 calls at start) then
    waits per_item_ms twice, not the whole request's time twice."""
    repo = tmp_path / "repo"
    options = {"delay_ms": 0, "per_item_ms": per_item_ms}
    export_zoo("delay", repo, max_batch_size=rows, options=options)
    serving = _Serving(repo, tmp_path / "data", drain_s)
    got: dict = {}

    def call() -> None:
        try:
            got["status"] = httpx.post(
                serving.url + "/v2/models/delay/infer", json=_body(rows), timeout=120
            ).status_code
        except httpx.TransportError as exc:
            got["status"] = exc

    try:
        assert serving.ready.wait(180), serving.lines[-20:]
        client = threading.Thread(target=call)
        client.start()
        _in_flight(serving.url)
        sent = time.monotonic()
        serving.proc.send_signal(signal.SIGTERM)
        serving.proc.wait(120)
        took_s = time.monotonic() - sent
        client.join(120)
    finally:
        serving.stop()
    out = serving.output()
    assert serving.proc.returncode == 0, out[-3000:]
    return got["status"], took_s, out


@pytest.mark.slow
def test_a_request_in_flight_at_sigterm_is_answered_within_the_drain(tmp_path):
    status, took_s, out = _run(tmp_path, rows=5, per_item_ms=500, drain_s=60)  # 2.5 s
    assert status == 200, out[-3000:]
    assert took_s < 60


@pytest.mark.slow
def test_the_gateway_exits_once_the_drain_is_over(tmp_path):
    # the request would take 10 s; uvicorn's fixed 30 s drain (and the replica's) held the exit
    # until it ended
    status, took_s, out = _run(tmp_path, rows=10, per_item_ms=1000, drain_s=1.5)
    print(f"exit {took_s:.1f} s after SIGTERM with a drain of 1.5 s")
    assert isinstance(status, httpx.TransportError) or status >= 500, status
    assert took_s < 8, out[-3000:]
