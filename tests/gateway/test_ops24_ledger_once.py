"""A ledger row lands once, even when a commit succeeded but its acknowledgement was lost and
the writer wrote the batch again (a real PostgreSQL behind a proxy that drops the connection
right after forwarding COMMIT), and an older ledger is migrated to keyed rows."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from urllib.parse import urlsplit

import pytest

from gateway.ledger import Ledger, make_backend, row_values
from gateway.ledger.migrations import LATEST_VERSION, MIGRATIONS

from .ops24_pg_proxy import CommitDropProxy


def _row(i: int):
    return row_values(f"req-{i}", time.time(), "acme", "mlp", "vm", 200, 2.0, cost_usd=0.001)


def _counts(target: str) -> tuple[int, int]:
    """(rows, distinct request ids) as another connection sees them."""
    return make_backend(target).query("SELECT COUNT(*), COUNT(DISTINCT id) FROM requests")[0]


async def test_a_commit_whose_answer_was_lost_is_retried_without_a_row_twice(postgres_url):
    proxy = CommitDropProxy(urlsplit(postgres_url).port)
    ledger = Ledger(proxy.url(postgres_url), retry_initial_s=0.01)
    await ledger.start()
    try:
        await ledger.record(
            _row(0)
        )  # the writer's connection is open: the next COMMIT is a batch's
        proxy.arm()
        await asyncio.wait_for(asyncio.gather(*(ledger.record(_row(i)) for i in range(1, 60))), 30)
        assert proxy.dropped.is_set()  # a batch was committed and its answer never arrived
        assert ledger.write_failures >= 1  # so the writer wrote it again
    finally:
        await ledger.close()
        proxy.close()
    assert tuple(_counts(postgres_url)) == (60, 60)


async def test_sqlite_rows_written_again_land_once(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(target)
    await ledger.start()
    await asyncio.gather(*(ledger.record(_row(i)) for i in range(10)))
    await ledger.close()
    stored = make_backend(target).query("SELECT * FROM requests")
    backend = make_backend(target)
    backend.write([tuple(row) for row in stored])  # the same rows, keys and all
    backend.close()
    assert tuple(_counts(target)) == (10, 10)


def test_a_client_reusing_a_request_id_is_still_billed_for_each_request(tmp_path):
    """The key is the gateway's, not the client's x-request-id (which a client may reuse)."""
    target = str(tmp_path / "ledger.sqlite")

    async def two():
        ledger = Ledger(target)
        await ledger.start()
        await ledger.record(_row(7))
        await ledger.record(_row(7))
        await ledger.close()

    asyncio.run(two())
    assert tuple(_counts(target)) == (2, 1)


def _v4_ledger(path: str, rows: int) -> None:
    """A ledger as a gateway before schema version 5 left it, with ``rows`` rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at REAL NOT NULL)"
    )
    for migration in MIGRATIONS[:4]:
        for statement in migration.sqlite:
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, "x"))
    marks = ", ".join("?" * 17)
    db.executemany(f"INSERT INTO requests VALUES ({marks})", [_row(i) for i in range(rows)])
    db.close()


async def test_an_older_ledger_is_migrated_to_keyed_rows_and_keeps_its_rows(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    _v4_ledger(target, 5)
    ledger = Ledger(target)
    assert ledger.schema_version == LATEST_VERSION == 5
    await ledger.start()
    await asyncio.gather(*(ledger.record(_row(i)) for i in range(100, 110)))
    await ledger.close()
    keys = make_backend(target).query("SELECT row_key FROM requests ORDER BY rowid")
    assert [key for (key,) in keys[:5]] == [None] * 5  # the old rows, unkeyed
    assert len({key for (key,) in keys[5:]}) == 10
    with pytest.raises(sqlite3.IntegrityError):  # the key is unique in the table
        db = sqlite3.connect(target)
        db.execute("INSERT INTO requests SELECT * FROM requests WHERE row_key IS NOT NULL")
