"""A stop during a database outage is bounded and loses no answered request's row: the rows the
database refuses go to a spill file (their requests are answered), written at the next start.
A real PostgreSQL behind a loopback proxy that is closed to cut the database off."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from gateway.ledger import Ledger, make_backend, row_values

from .ops24_pg_proxy import CommitDropProxy


def _row(i: int):
    return row_values(f"req-{i}", time.time(), "acme", "mlp", "vm", 200, 2.0, cost_usd=0.001)


def _counts(target: str) -> tuple[int, int]:
    return tuple(make_backend(target).query("SELECT COUNT(*), COUNT(DISTINCT id) FROM requests")[0])


async def _cut_off(ledger: Ledger, proxy: CommitDropProxy, rows: range) -> list[asyncio.Task]:
    """Cut the database off and queue ``rows``: tasks that wait for it (failing once seen)."""
    proxy.close()  # its connections end, and no new one is accepted
    tasks = [asyncio.create_task(ledger.record(_row(i))) for i in rows]
    deadline = time.monotonic() + 30
    while ledger.failing() is None:
        assert time.monotonic() < deadline, "the ledger never saw the outage"
        await asyncio.sleep(0.01)
    assert not any(task.done() for task in tasks)  # held: nothing is answered without its row
    return tasks


async def test_a_stop_in_an_outage_answers_the_waiting_requests_and_keeps_their_rows(
    postgres_url, tmp_path
):
    proxy = CommitDropProxy(urlsplit(postgres_url).port)
    ledger = Ledger(proxy.url(postgres_url), spill_dir=tmp_path, retry_initial_s=0.01)
    await ledger.start()
    await ledger.record(_row(0))
    tasks = await _cut_off(ledger, proxy, range(1, 21))
    started = time.monotonic()
    assert ledger.release() == 20  # the stop begins (gateway.lifespan.drain)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)  # answered: their rows are on disk
    await asyncio.wait_for(ledger.record(_row(21)), 5)  # one finishing during the drain, too
    await ledger.close()
    assert time.monotonic() - started < 5  # was: up to 30 s of retries, then rows lost
    assert _counts(postgres_url) == (1, 1)
    spilled = list(tmp_path.glob("ledger-spill-*.jsonl"))
    assert len(spilled) == 1 and len(spilled[0].read_bytes().splitlines()) == 21

    again = Ledger(postgres_url, spill_dir=tmp_path)  # the next start, the database back
    assert again.replayed == 21 and _counts(postgres_url) == (22, 22)
    assert list(tmp_path.glob("ledger-spill-*.jsonl")) == []
    assert Ledger(postgres_url, spill_dir=tmp_path).replayed == 0
    again.backend.close()


async def test_close_in_an_outage_is_bounded_by_its_setting_and_spills_what_is_left(
    postgres_url, tmp_path
):
    proxy = CommitDropProxy(urlsplit(postgres_url).port)
    ledger = Ledger(
        proxy.url(postgres_url), spill_dir=tmp_path, retry_initial_s=0.01, shutdown_timeout_s=1.0
    )
    await ledger.start()
    await ledger.record(_row(0))
    tasks = await _cut_off(ledger, proxy, range(1, 11))
    started = time.monotonic()
    await ledger.close()  # no release: a lifespan that ends without the drain
    assert 1.0 <= time.monotonic() - started < 4
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    Ledger(postgres_url, spill_dir=tmp_path).backend.close()  # replays
    assert _counts(postgres_url) == (11, 11)


async def test_rows_the_database_had_taken_are_not_written_twice_from_the_spill(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(target)
    await ledger.start()
    await asyncio.gather(*(ledger.record(_row(i)) for i in range(5)))
    await ledger.close()
    from gateway.ledger.spill import SpillFile

    spill = SpillFile(tmp_path, ledger.backend.describe())  # a lost answer: spilled, yet in
    spill.append([tuple(row) for row in make_backend(target).query("SELECT * FROM requests")])
    spill.close()
    other = SpillFile(tmp_path, "sqlite:/elsewhere/ledger.sqlite")  # another ledger's
    other.append([(*_row(99), "k99")])
    other.close()
    assert Ledger(target).replayed == 5 and _counts(target) == (5, 5)
    assert [p.name for p in tmp_path.glob("ledger-spill-*")] == [other.path.name]
