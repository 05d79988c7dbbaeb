"""The ledger's journal: a row is written before its answer, folded into SQLite in batches,
and a SIGKILL at any moment neither loses nor doubles a row (gateway.ledger.journal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.ledger import Ledger, make_backend, row_values

ROOT = Path(__file__).resolve().parents[2]


def _ledger(path: Path, **kw) -> Ledger:
    return Ledger(make_backend(path, sqlite_synchronous="NORMAL"), journal=True, **kw)


def _ids(path: Path) -> list[str]:
    """The ids another process reading the database sees."""
    return [rid for (rid,) in make_backend(path).query("SELECT id FROM requests ORDER BY ts")]


def _row(i: int) -> tuple:
    return row_values(f"r{i}", time.time(), "acme", "mlp", "vm", 200, 1.5, cost_usd=0.001)


async def test_rows_are_folded_into_the_database_and_the_ledger_reads_its_own(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = _ledger(path, fold_interval_s=3600)  # no fold by the timer in this test
    await ledger.start()
    try:
        for i in range(5):
            await ledger.record(_row(i))
        assert ledger.journal is not None and ledger.journal.rows_folded == 0
        assert ledger.count() == 5  # a query folds first: the gateway's reports do not lag
        assert _ids(path) == [f"r{i}" for i in range(5)]
        assert ledger._on_loop  # (the journal replaced the commit on the loop, not the backend)
    finally:
        await ledger.close()
    assert not list(tmp_path.glob("ledger.sqlite.journal.*"))  # a clean close leaves none


async def test_the_folder_thread_folds_within_its_interval(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = _ledger(path, fold_interval_s=0.01)
    await ledger.start()
    try:
        for i in range(3):
            await ledger.record(_row(i))
        deadline = time.monotonic() + 30
        while len(_ids(path)) < 3:
            assert time.monotonic() < deadline, "never folded"
            time.sleep(0.01)
    finally:
        await ledger.close()


async def test_a_failed_journal_write_sends_the_row_to_the_database(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite"
    ledger = _ledger(path, fold_interval_s=3600)
    await ledger.start()
    try:

        def full(values):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(ledger.journal, "append", full)
        await ledger.record(_row(0))  # returns once the writer thread committed it
        assert _ids(path) == ["r0"]
    finally:
        await ledger.close()


def test_a_torn_last_line_is_skipped_and_folded_segments_are_not_folded_twice(tmp_path):
    path = tmp_path / "ledger.sqlite"
    backend = make_backend(path, sqlite_synchronous="NORMAL")
    Ledger(backend)  # migrated
    backend.write_journal([_row(0)], 1)  # segment 1 was folded, but its file was left behind
    (tmp_path / "ledger.sqlite.journal.1").write_bytes(b'["r0"]\n')
    segment = tmp_path / "ledger.sqlite.journal.2"
    import orjson

    segment.write_bytes(orjson.dumps(_row(1)) + b"\n" + orjson.dumps(_row(2))[:20])
    ledger = _ledger(path)
    assert _ids(path) == ["r0", "r1"]  # r2 was never acknowledged: its write was cut short
    assert not segment.exists() and ledger.journal._seq == 3
    ledger.journal.close()


def test_a_segment_a_crash_left_mapped_is_read_up_to_its_padding(tmp_path):
    import orjson

    path = tmp_path / "ledger.sqlite"
    Ledger(make_backend(path, sqlite_synchronous="NORMAL"))  # migrated
    rows = orjson.dumps(_row(1)) + b"\n" + orjson.dumps(_row(2)) + b"\n"
    torn = orjson.dumps(_row(3))[:30]  # a copy cut short, then the segment's unused room
    (tmp_path / "ledger.sqlite.journal.1").write_bytes(rows + torn + bytes(4096))
    ledger = _ledger(path)
    assert ledger.journal.rows_recovered == 2
    assert _ids(path) == ["r1", "r2"]
    ledger.journal.close()


async def test_rows_past_a_full_segment_go_to_the_next(tmp_path, monkeypatch):
    from gateway.ledger import journal

    monkeypatch.setattr(journal._Segment.__init__, "__defaults__", (200,))  # 2 rows a segment
    path = tmp_path / "ledger.sqlite"
    ledger = _ledger(path, fold_interval_s=3600)
    await ledger.start()
    try:
        for i in range(10):
            await ledger.record(_row(i))
        assert len(list(tmp_path.glob("ledger.sqlite.journal.*"))) >= 4
        assert ledger.count() == 10
        assert _ids(path) == [f"r{i}" for i in range(10)]
    finally:
        await ledger.close()
    assert not list(tmp_path.glob("ledger.sqlite.journal.*"))


_WRITER = """
import asyncio, sys, time
sys.path.insert(0, {root!r})
from gateway.ledger import Ledger, make_backend, row_values

async def main():
    ledger = Ledger(make_backend({path!r}, sqlite_synchronous="NORMAL"), journal=True,
                    fold_interval_s=0.002)
    await ledger.start()
    i = {start}
    while True:
        await ledger.record(row_values(f"r{{i}}", time.time(), "a", "mlp", "vm", 200, 1.0))
        print(i, flush=True)  # acknowledged: the answer would go out now
        i += 1
        if i % 50 == 0:
            await asyncio.sleep(0.001)

asyncio.run(main())
"""


def _kill_while_writing(path: Path, start: int, after: int) -> int:
    """Start the writer, SIGKILL it once `after` rows were acknowledged; the last acknowledged
    row. A thread drains every acknowledgement, so the writer never waits on a full pipe (a
    writer blocked in print() lets its folder catch up, and the kill would find nothing to
    recover)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(root=str(ROOT), path=str(path), start=start)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[int] = []
    enough = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= after:
                enough.set()
        enough.set()  # (EOF: the writer died on its own)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    enough.wait(120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    reader.join(30)  # every line printed before the kill was acknowledged
    proc.stdout.close()
    assert len(acked) >= after, "the writer stopped before the kill"
    return max(acked)


@pytest.mark.slow
def test_sigkill_while_rows_are_written_and_folded_loses_and_doubles_none(tmp_path):
    path = tmp_path / "ledger.sqlite"
    recovered = 0
    for run in range(3):  # three kills at different moments, on the same files
        start = run * 1_000_000
        acknowledged = _kill_while_writing(path, start, 3000 + 700 * run)
        assert list(tmp_path.glob("ledger.sqlite.journal.*"))  # rows left to recover
        ledger = _ledger(path)  # recovery on start
        recovered += ledger.journal.rows_recovered
        ids = _ids(path)
        assert len(ids) == len(set(ids)), "a row was folded twice"
        got = {int(rid[1:]) for rid in ids}
        missing = [i for i in range(start, acknowledged + 1) if i not in got]
        assert not missing, f"{len(missing)} acknowledged rows lost (run {run})"
        ledger.journal.close()
        ledger.backend.close()
    assert recovered > 0  # the kills left rows only the journal had: recovery was exercised


def test_one_process_owns_a_journal_a_second_is_refused_until_it_closes(tmp_path):
    from gateway.ledger.journal import JournalBusy, holder

    path = tmp_path / "ledger.sqlite"
    first = _ledger(path)
    assert holder(path) == str(os.getpid())
    with pytest.raises(JournalBusy, match="in use by another gateway"):
        _ledger(path)  # two folders would insert the same segment twice
    first.journal.close()
    assert holder(path) is None
    second = _ledger(path)  # free again once the owner closed it
    second.journal.close()


@pytest.mark.slow
def test_report_reads_rows_a_killed_gateway_left_and_never_folds_a_live_ones(tmp_path):
    from gateway.ledger.journal import fold_left_behind, holder
    from ops.report import open_ledger

    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(root=str(ROOT), path=str(path), start=0)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        acknowledged = 0
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 2000:
                break
        assert holder(path) == str(proc.pid)
        assert fold_left_behind(make_backend(path), path) is None  # the live writer folds
        open_ledger(tmp_path)  # a report while it runs reads, and leaves its segments alone
        assert list(tmp_path.glob("ledger.sqlite.journal.*"))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
    query = open_ledger(tmp_path)  # the writer is gone: its rows are folded in for the report
    ids = [rid for (rid,) in query("SELECT id FROM requests", ())]
    assert len(ids) == len(set(ids))
    got = {int(rid[1:]) for rid in ids}
    assert all(i in got for i in range(acknowledged + 1)), "an acknowledged row is not reported"
    assert not list(tmp_path.glob("ledger.sqlite.journal.*"))
