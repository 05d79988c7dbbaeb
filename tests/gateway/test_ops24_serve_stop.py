"""SIGTERM to `tidegate serve` while its PostgreSQL ledger is cut off, with requests held for
their rows: the gateway stops within seconds (it took over 60: uvicorn's 30 s drain, then the
ledger's 30 s), the held requests are answered, and every request answered 200 has its row once
a gateway starts again on the same data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from gateway.ledger import Ledger

from .conftest import free_port, wait_ready
from .ops24_pg_proxy import CommitDropProxy

ROOT = Path(__file__).resolve().parents[2]
BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}


class _Load:
    """Clients sending mlp requests until ``stop``; what each got, by request id."""

    def __init__(self, url: str, clients: int):
        self.url, self.stop = url, threading.Event()
        self.answers: dict[str, tuple[int, float]] = {}  # id -> (status, when it came)
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                rid = uuid.uuid4().hex
                try:
                    status = client.post(
                        self.url + "/v2/models/mlp/infer", json=BODY, headers={"x-request-id": rid}
                    ).status_code
                except httpx.TransportError:
                    status = 0  # the gateway went away
                with self.cond:
                    self.answers[rid] = (status, time.monotonic())
                    self.cond.notify_all()
                if status == 0:
                    return

    def wait_for(self, status: int, count: int, timeout_s: float = 60) -> None:
        with self.cond:
            done = self.cond.wait_for(
                lambda: sum(s == status for s, _ in self.answers.values()) >= count, timeout_s
            )
        assert done, f"never {count} answers {status}: {self.answers}"

    def ok_ids(self) -> set[str]:
        return {rid for rid, (status, _) in self.answers.items() if status == 200}


def _until_refused(url: str, timeout_s: float = 60.0) -> None:
    """Probe until a request is refused 503 (the clients may all be held for their rows, so
    none of theirs would be); a probe held too is given up after a moment and retried."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                r = client.post(url + "/v2/models/mlp/infer", json=BODY)
            except httpx.TimeoutException:
                continue
            if r.status_code == 503:
                return
    raise AssertionError("the gateway never refused a request while its ledger was cut off")


def test_sigterm_in_a_ledger_outage_stops_quickly_and_loses_no_answered_row(
    postgres_url, small_repo, tmp_path
):
    proxy = CommitDropProxy(urlsplit(postgres_url).port)
    port = free_port()
    env = {
        **os.environ,
        "TIDEGATE_GRPC_PORT": "-1",
        "TIDEGATE_BURST__ENABLED": "false",
        "TIDEGATE_VM__THREADS": "1",
        "TIDEGATE_LEDGER__URL": proxy.url(postgres_url),
    }
    argv = ["serve", "--data-dir", str(tmp_path), "--repo", str(small_repo), "--port", str(port)]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:  # (a file: a full pipe would stall the gateway)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops", *argv],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/v2/health/ready", proc)
        load = _Load(url, clients=8)
        load.wait_for(200, 30)
        proxy.close()  # the database is cut off: rows in flight cannot be written
        _until_refused(url)  # the gateway saw it: new requests are refused
        load.stop.set()
        sent_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        took_s = time.monotonic() - sent_term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
    for thread in load.threads:
        thread.join(60)
    out = log_path.read_text(errors="replace")
    held = [rid for rid, (s, when) in load.answers.items() if s == 200 and when >= sent_term]
    print(f"stop took {took_s:.1f} s; {len(held)} requests were held for their rows")
    assert proc.returncode == 0, out[-3000:]
    assert took_s < 15, f"stop took {took_s:.1f} s"
    assert held, "no request was waiting for its row at the SIGTERM"
    assert "for the next start" in out  # the log says where the rows went
    again = Ledger(postgres_url, spill_dir=tmp_path)  # what the next start does first
    assert again.replayed > 0
    stored = {rid for (rid,) in again.query("SELECT id FROM requests WHERE status = 200")}
    assert load.ok_ids() <= stored
    rows, ids = again.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM requests")[0]
    assert rows == ids  # no row twice
    again.backend.close()
