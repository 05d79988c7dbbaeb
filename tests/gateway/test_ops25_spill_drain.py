"""Rows a gateway stopping in a database outage spilled reach a shared PostgreSQL while another
gateway on that data directory keeps running: its writer drains the spill file once the
database is back, with no restart, and every row is there once. A real PostgreSQL of the test's
own is stopped and started again (the session's server is shared with other tests)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from gateway.ledger import Ledger, make_backend, row_values
from tests.support.postgres import _wait_accepting, pg_bin_dir, start_postgres
from vmpool.procs import spawn_sync

from .ops24_pg_proxy import CommitDropProxy
from .test_ops24_ledger_stop import _cut_off

pytestmark = pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL is not installed")

COST_USD = (0.00125, 0.0031, 0.000007, 0.02)  # cents that do not add up in binary


def _row(i: int, tenant: str = "acme"):
    cost = COST_USD[i % len(COST_USD)]
    return row_values(f"req-{i}", time.time(), tenant, "mlp", "vm", 200, 2.0, cost_usd=cost)


def _counts(url: str) -> tuple[int, int]:
    backend = make_backend(url)
    try:
        return tuple(backend.query("SELECT COUNT(*), COUNT(DISTINCT id) FROM requests")[0])
    finally:
        backend.close()


async def _until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def report_tenants(url: str) -> dict:
    """``tidegate report --format json``'s tenants for the ledger at ``url`` (its own process)."""
    out = subprocess.run(
        [sys.executable, "-m", "ops.cli", "report", "--ledger", url, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["tenants"]


def _halt(server) -> None:
    """Stop the PostgreSQL server (fast shutdown), keeping its data directory."""
    server.proc.send_signal(2)
    server.proc.wait(60)


def _resume(server) -> None:
    """Start it again on its data directory and port."""
    user = "postgres" if server.proc.args and _is_root() else None
    server.proc = spawn_sync(
        list(server.proc.args), log_path=server.base / "postgres.log", user=user, cwd=server.base
    )
    _wait_accepting(server)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


@pytest.fixture
def own_postgres():
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


async def test_a_running_gateway_drains_a_stopped_ones_spill_once_the_database_is_back(
    own_postgres, tmp_path
):
    url = own_postgres.create_database()
    running = Ledger(url, spill_dir=tmp_path, retry_initial_s=0.02, spill_scan_s=0.2)
    stopping = Ledger(url, spill_dir=tmp_path, retry_initial_s=0.02)
    await running.start()
    await stopping.start()
    await asyncio.gather(*(running.record(_row(i)) for i in range(5)))
    await asyncio.gather(*(stopping.record(_row(i, "globex")) for i in range(100, 103)))

    _halt(own_postgres)  # the outage
    held = [asyncio.create_task(running.record(_row(i))) for i in range(5, 9)]
    spilled = [asyncio.create_task(stopping.record(_row(i, "globex"))) for i in range(103, 110)]
    await _until(lambda: stopping.failing() is not None, "the outage was never seen")
    stopping.release()  # its SIGTERM (gateway.lifespan.drain): rows to the spill file
    await asyncio.wait_for(asyncio.gather(*spilled), 10)  # answered: on disk
    await stopping.close(timeout_s=0.5)
    assert len(list(tmp_path.glob("ledger-spill-*.jsonl"))) == 1

    _resume(own_postgres)  # the database is back; the running gateway is not restarted
    await asyncio.wait_for(asyncio.gather(*held), 60)
    await _until(lambda: _counts(url) == (19, 19), "the spill file never reached the database")
    # (the file goes inside the replay, its rows are counted after it: wait for both)
    await _until(lambda: not list(tmp_path.glob("ledger-spill-*")), "the spill file stayed")
    await _until(lambda: running.replayed >= 7, "the replay was never counted")
    assert running.replayed == 7
    await running.close()
    assert _counts(url) == (19, 19)  # once each: the drain ran more than once, no row twice

    expected = sum(Decimal(str(COST_USD[i % 4])) for i in [*range(9), *range(100, 110)])
    tenants = report_tenants(url)
    assert {t: v["requests"] for t, v in tenants.items()} == {"acme": 9, "globex": 10}
    cents = sum(Decimal(str(v["cost_usd"])) for v in tenants.values()).quantize(Decimal("0.01"))
    assert cents == expected.quantize(Decimal("0.01"))


async def test_no_start_or_drain_takes_a_spill_file_its_writer_still_appends_to(
    postgres_url, tmp_path
):
    proxy = CommitDropProxy(urlsplit(postgres_url).port)
    stopping = Ledger(proxy.url(postgres_url), spill_dir=tmp_path, retry_initial_s=0.01)
    await stopping.start()
    await stopping.record(_row(0))
    first = await _cut_off(stopping, proxy, range(1, 4))  # the outage, for this gateway
    stopping.release()
    await asyncio.wait_for(asyncio.gather(*first), 10)

    # a replica starting on the data directory meanwhile (the database reachable from it)
    starting = Ledger(postgres_url, spill_dir=tmp_path, spill_scan_s=0.1)
    assert starting.replayed == 0  # the file is still being written: not taken
    await starting.start()
    await stopping.record(_row(4))  # a request finishing during the stop: to the same file
    await stopping.close(timeout_s=0.5)
    await _until(lambda: _counts(postgres_url) == (5, 5), "rows of the spill file were lost")
    await starting.close()
