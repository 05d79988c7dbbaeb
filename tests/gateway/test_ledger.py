"""The ledger: durable before ``record`` returns, group commit, retries, migrations, both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import pytest

from gateway.ledger import COLUMNS, Ledger, LedgerRow, make_backend, row_values
from gateway.ledger.migrations import LATEST_VERSION, MIGRATIONS


def row(i: int, tenant: str = "acme") -> LedgerRow:
    return LedgerRow(
        id=f"r{i}",
        ts=time.time(),
        tenant=tenant,
        model="mlp",
        path="vm",
        status=200,
        latency_ms=1.5,
        cost_usd=0.001,
        reason="vm-has-capacity",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres_url")


def fresh_count(target: str) -> int:
    """Rows as a separate connection sees them (what a crash would leave)."""
    return make_backend(target).query("SELECT COUNT(*) FROM requests")[0][0]


async def test_a_recorded_row_is_already_committed(target):
    ledger = Ledger(target)
    await ledger.start()
    try:
        for i in range(3):
            await ledger.record(row(i))
            assert fresh_count(target) == i + 1
        ((reason,),) = make_backend(target).query("SELECT reason FROM requests WHERE id = 'r2'")
        assert reason == "vm-has-capacity"
    finally:
        await ledger.close()


async def test_concurrent_rows_share_commits_and_none_is_lost(target):
    ledger = Ledger(target)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record(row(i)) for i in range(2000)))
    finally:
        await ledger.close()
    assert fresh_count(target) == 2000
    assert Ledger(target).ids() == {f"r{i}" for i in range(2000)}
    assert ledger.commits < 200  # group commit: many rows per transaction


class FlakyBackend:
    """The real backend, but the first ``failures`` writes raise (a lost connection, a full disk)."""

    def __init__(self, inner, failures: int):
        self.inner, self.failures = inner, failures
        self.placeholder = inner.placeholder

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, rows):
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk unavailable")
        self.inner.write(rows)


async def test_a_failed_write_keeps_its_rows_and_retries(target):
    ledger = Ledger(FlakyBackend(make_backend(target), failures=3), retry_initial_s=0.01)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record(row(i)) for i in range(50)))
    finally:
        await ledger.close()
    assert ledger.write_failures == 3
    assert fresh_count(target) == 50  # each row exactly once


async def test_waiting_requests_are_answered_only_once_their_rows_are_in(tmp_path):
    backend = FlakyBackend(make_backend(str(tmp_path / "l.sqlite")), failures=1000)
    ledger = Ledger(backend, retry_initial_s=0.01, retry_max_s=0.01)
    await ledger.start()
    waiter = asyncio.ensure_future(ledger.record(row(1)))
    while ledger.write_failures < 3:
        await asyncio.sleep(0.01)
    assert not waiter.done() and ledger.queued == 1
    backend.failures = 0  # the disk is back
    await asyncio.wait_for(waiter, 10)
    await ledger.close()
    assert fresh_count(str(tmp_path / "l.sqlite")) == 1


async def test_without_fsync_rows_commit_on_the_loop_durably_and_in_groups(tmp_path):
    target = str(tmp_path / "normal.sqlite")
    ledger = Ledger(make_backend(target, sqlite_synchronous="NORMAL"))
    await ledger.start()
    try:
        await ledger.record(row(0))
        assert fresh_count(target) == 1  # committed before record returned
        await asyncio.gather(*(ledger.record(row(i)) for i in range(1, 2001)))
        assert fresh_count(target) == 2001
        for i in range(2001, 2301):  # enough commits for the writer thread to checkpoint
            await ledger.record(row(i))
    finally:
        await ledger.close()
    assert Ledger(target).ids() == {f"r{i}" for i in range(2301)}
    assert ledger.commits < 400  # the 2,000 concurrent rows shared one commit


class FlakyLoopBackend(FlakyBackend):
    """Commits on the loop fail ``failures`` times; the writer thread's writes succeed."""

    def write_now(self, rows):
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.inner.write_now(rows)

    def write(self, rows):
        self.inner.write(rows)


async def test_a_failed_commit_on_the_loop_is_taken_over_by_the_writer_thread(tmp_path):
    target = str(tmp_path / "normal.sqlite")
    backend = FlakyLoopBackend(make_backend(target, sqlite_synchronous="NORMAL"), failures=1)
    ledger = Ledger(backend)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record(row(i)) for i in range(20)))
        assert fresh_count(target) == 20  # answered only once the thread had written them
        await ledger.record(row(20))  # and the loop commits again
    finally:
        await ledger.close()
    assert Ledger(target).ids() == {f"r{i}" for i in range(21)}


def test_a_ledger_from_before_migrations_is_adopted_and_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema the first release wrote, with one row in it
        for statement in MIGRATIONS[0].sqlite:
            db.execute(statement)
        db.execute(
            "INSERT INTO requests VALUES ('old', 1.0, 'acme', 'mlp', 'vm', 200, 2.0, 1, 0,"
            " 0, 0.5, 0, 0, 0.5, 0, '')"
        )
    ledger = Ledger(path)
    assert ledger.schema_version == LATEST_VERSION
    assert ledger.query("SELECT id, reason FROM requests") == [("old", "")]
    assert ledger.spent_by_tenant() == {"acme": 0.5}
    versions = ledger.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]
    assert Ledger(path).schema_version == LATEST_VERSION  # a second open changes nothing


async def test_two_gateway_replicas_share_one_postgres_ledger(postgres_url):
    first, second = Ledger(postgres_url), Ledger(postgres_url)  # both migrate: no conflict
    await first.start()
    await second.start()
    try:
        await asyncio.gather(
            *(first.record(row(i, "a")) for i in range(300)),
            *(second.record(row(1000 + i, "b")) for i in range(300)),
        )
    finally:
        await first.close()
        await second.close()
    assert fresh_count(postgres_url) == 600
    assert first.spent_by_tenant() == pytest.approx({"a": 0.3, "b": 0.3})


def test_the_password_of_a_postgres_url_is_never_described():
    backend = make_backend("postgresql://bill:s3cret@db.internal:5432/ledger")
    assert "s3cret" not in backend.describe() and "db.internal" in backend.describe()


def test_row_values_are_a_ledger_row_in_column_order():
    row = LedgerRow(
        id="r1", ts=1.5, tenant="t", model="m", path="vm", status=200, latency_ms=2.0,
        batch_size=3, workers=1, cold_starts=2, vm_cost_usd=0.1, function_cost_usd=0.2,
        store_cost_usd=0.3, cost_usd=0.6, billed_ms=7, detail="d", reason="slo",
    )  # fmt: skip
    assert row_values(**dataclasses.asdict(row)) == tuple(getattr(row, c) for c in COLUMNS)
