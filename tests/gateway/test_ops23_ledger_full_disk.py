"""ops23: the ledger on a disk that fills up mid-run (a real tmpfs of 1 MiB, filled to ENOSPC).

The journal cannot open its next segment, so rows go to the database (into its WAL's room, or
they wait: nothing is answered without its row), and once room is back every row is there,
exactly once. A ledger on a read-only file system at start is an error naming the file and why
(it said only "unable to open database file"). Before, each such row logged its own warning ("the row goes to the database
instead"): 88 lines in 15 s from a 24-client load, one per request at any rate. Now an outage
is one warning, and one line when the journal is written again."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import subprocess
import uuid

import pytest

from gateway.ledger import Ledger, make_backend, row_values


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


pytestmark = pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(disk) -> None:
    with open(disk / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


def _row(n: int) -> tuple:
    return row_values(f"r{n}", 1.7e9 + n, "acme", "mlp", "vm", 200, 5.0, cost_usd=1e-6)


async def test_a_full_disk_holds_rows_until_room_is_back_and_warns_once(small_disk, caplog):
    database = small_disk / f"{uuid.uuid4().hex}.sqlite"
    backend = make_backend(database, sqlite_synchronous="NORMAL")
    ledger = Ledger(backend, journal=True, fold_interval_s=0.05, retry_max_s=0.2)
    assert ledger.journal is not None
    await ledger.start()
    try:
        with caplog.at_level(logging.WARNING, "tidegate.ledger"):
            await ledger.record(_row(0))
            _fill(small_disk)
            await ledger.record(_row(1))  # (its segment's room was reserved: written)
            with pytest.raises((OSError, sqlite3.Error)):  # no room for the next segment
                await asyncio.to_thread(ledger.journal.fold_now)
            # to the database (its WAL's room, or waiting until the disk has room again)
            waiting = [asyncio.ensure_future(ledger.record(_row(n))) for n in range(2, 22)]
            await asyncio.wait(waiting, timeout=1.0)
            os.unlink(small_disk / "filler")
            await asyncio.wait_for(asyncio.gather(*waiting), 60)
            await ledger.record(_row(22))  # the journal again
        journal_lines = [
            r.getMessage()
            for r in caplog.records
            if r.getMessage().startswith("ledger journal: [Errno 28] No space left on device")
        ]
        assert len(journal_lines) == 1, journal_lines  # (it was one per row: 20)
        back = [r.getMessage() for r in caplog.records if "written again" in r.getMessage()]
        assert back == ["ledger journal: written again (20 rows went to the database meanwhile)"]
    finally:
        await ledger.close()
    counts = dict(
        Ledger(make_backend(database)).query("SELECT id, COUNT(*) FROM requests GROUP BY id")
    )
    assert counts == {f"r{n}": 1 for n in range(23)}


def test_a_ledger_on_a_read_only_file_system_says_which_file_and_why(small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    database = small_disk / "ledger.sqlite"
    with pytest.raises(sqlite3.OperationalError) as err:
        Ledger(make_backend(database))
    assert str(err.value) == (
        f"ledger {database}: unable to open database file "
        f"({small_disk} is on a read-only file system)"
    )
