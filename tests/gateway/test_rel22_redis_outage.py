"""Shared limits on a real redis-server (on a unix socket, port 0) killed mid-traffic: requests
are admitted (fail open, the documented choice), the outage is one warning and one line when
Redis is back (not one a request or one every 10 s), and each request let through unchecked is
counted on /metrics."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time

import pytest
from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics
from gateway.settings import TenantSettings
from gateway.tenants import TenantRegistry, make_limits

from .test_tenants import FakeClock

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0,
    reason="redis-server is not installed",
)


def _start_redis(tmp_path) -> tuple[subprocess.Popen, str]:
    sock = tmp_path / "redis.sock"
    sock.unlink(missing_ok=True)  # (a killed server leaves its socket file)
    args = ["--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        ["redis-server", *args, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not _pong(sock):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    return proc, f"unix://{sock}"


def _pong(sock) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


def _metric(metrics: GatewayMetrics, op: str) -> float:
    text = generate_latest(metrics.registry).decode()
    for line in text.splitlines():
        if line.startswith(f'tidegate_shared_limits_unavailable_total{{op="{op}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_redis_killed_mid_traffic_fails_open_warns_once_and_counts(tmp_path, caplog):
    proc, url = _start_redis(tmp_path)
    metrics = GatewayMetrics()
    reg = TenantRegistry(
        [TenantSettings(name="acme", api_keys=["k-acme"], rate_per_s=1000, burst=1000)],
        limits=make_limits(url, registry=metrics.registry),
        clock=FakeClock(),
    )
    acme = reg.authenticate(None, "k-acme")
    admitted = 0
    reached = {n: asyncio.Event() for n in (20, 120)}

    async def traffic(total: int) -> None:
        nonlocal admitted
        while admitted < total:
            await reg.admit(acme)  # raises if refused: every request must be admitted
            admitted += 1
            if admitted in reached:
                reached[admitted].set()
            await asyncio.sleep(0)

    try:
        with caplog.at_level(logging.INFO, "tidegate.tenants"):
            running = asyncio.ensure_future(traffic(120))
            await asyncio.wait_for(reached[20].wait(), 30)
            assert reg.limits.failures == 0  # the unix socket URL reaches Redis
            proc.kill()  # mid-traffic
            proc.wait(10)
            await asyncio.wait_for(running, 60)
            unchecked = _metric(metrics, "admit")
            assert 90 <= unchecked <= 100, unchecked  # (a few may have been answered first)
            proc, url = _start_redis(tmp_path)  # back, on the same socket
            await reg.admit(acme)
        warnings = [r.getMessage() for r in caplog.records if "shared limits" in r.getMessage()]
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith("shared limits unavailable (admitting requests")
        assert warnings[1].startswith("shared limits back")
        assert f"({int(unchecked)} operations unchecked)" in warnings[1]
        assert _metric(metrics, "admit") == unchecked  # no more once Redis answers
    finally:
        await reg.close()
        proc.kill()
        proc.wait(10)
