"""The ledger with a commit interval: answers do not wait for their rows, a clean shutdown writes
every row, and a SIGKILL after an interval has passed loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ledger import Ledger, make_backend
from tests.gateway.test_ledger import FlakyLoopBackend, fresh_count, row

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_clean_shutdown_writes_every_row_recorded_within_the_interval(
    tmp_path, synchronous
):
    target = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(make_backend(target, sqlite_synchronous=synchronous), commit_interval_s=30.0)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record(row(i)) for i in range(500)))
        if synchronous == "NORMAL":  # on the loop: nothing committed before the interval
            assert fresh_count(target) == 0
    finally:
        await ledger.close()
    assert Ledger(target).ids() == {f"r{i}" for i in range(500)}


async def test_the_rows_of_an_interval_share_one_commit(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(make_backend(target, sqlite_synchronous="NORMAL"), commit_interval_s=0.05)
    await ledger.start()
    try:
        for i in range(300):  # one at a time, as sequential requests would
            await ledger.record(row(i))
        assert ledger.commits == 0
        while ledger.rows_written < 300:
            await asyncio.sleep(0.01)
        assert ledger.commits == 1 and fresh_count(target) == 300
    finally:
        await ledger.close()


async def test_a_failed_interval_commit_is_retried_by_the_writer_thread(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    backend = FlakyLoopBackend(make_backend(target, sqlite_synchronous="NORMAL"), failures=1)
    ledger = Ledger(backend, commit_interval_s=0.01)
    await ledger.start()
    try:
        await asyncio.gather(*(ledger.record(row(i)) for i in range(20)))
        while ledger.rows_written < 20:
            await asyncio.sleep(0.01)
        await ledger.record(row(20))
    finally:
        await ledger.close()
    assert Ledger(target).ids() == {f"r{i}" for i in range(21)}


_CHILD = """
import asyncio, sys
from gateway.ledger import Ledger, make_backend
from tests.gateway.test_ledger import row

async def main():
    ledger = Ledger(make_backend(sys.argv[1], sqlite_synchronous="NORMAL"), commit_interval_s=0.02)
    await ledger.start()
    for i in range(200):
        await ledger.record(row(i))
    while ledger.rows_written < 200:  # one interval later
        await asyncio.sleep(0.005)
    print("committed", flush=True)
    await asyncio.sleep(3600)  # killed here, never closed

asyncio.run(main())
"""


def test_a_sigkill_after_the_commit_interval_loses_no_row(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, target], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "committed"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    assert fresh_count(target) == 200
