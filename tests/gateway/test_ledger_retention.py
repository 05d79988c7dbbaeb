"""Ledger retention: rows older than ``[ledger] retain_days`` go in the background, on SQLite and
PostgreSQL, in every commit mode; reports that reach before them say so; an operator prunes by
hand with ``tidegate ledger prune``. Time is a clock the test moves (no waiting on the wall)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from gateway.ledger import Ledger, LedgerSettings, make_backend, row_values
from gateway.ledger.retention import DAY_S, LedgerPruner, prune_before
from gateway.reports import ReportFilter, build_report
from ops.cli import main
from ops.report import render_table

NOW = 1_790_000_000.0  # 2026-09-21


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def values(i: int, ts: float, tenant: str = "acme") -> tuple:
    return row_values(f"r{i}", ts, tenant, "mlp", "vm", 200, 2.0, cost_usd=0.001)


def seed(target: str, ages_days: list[float], start: int = 0) -> None:
    """Rows written straight into the ledger, each ``age`` days before NOW."""
    backend = make_backend(target)
    backend.migrate()
    backend.write([values(start + i, NOW - age * DAY_S) for i, age in enumerate(ages_days)])
    backend.close()


def ids(target: str) -> set[str]:
    return {r for (r,) in make_backend(target).query("SELECT id FROM requests")}


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres_url")


async def test_rows_past_retain_days_go_and_the_rest_stay(target):
    seed(target, [500, 401, 399, 1])  # r0 .. r3
    clock = Clock()
    ledger = Ledger(target, retain_days=400, clock=clock)
    await ledger.start()
    try:
        assert ledger.pruner.wait_passes(1)
        assert ids(target) == {"r2", "r3"}
        await ledger.record(values(9, clock.now))  # the gateway goes on writing
        clock.now += 2 * DAY_S  # two days on: r2 is 401 days old now
        ledger.pruner.wake()
        assert ledger.pruner.wait_passes(2)
        assert ids(target) == {"r3", "r9"}
        assert ledger.pruner.rows_pruned == 3
    finally:
        await ledger.close()


@pytest.mark.parametrize(
    "mode",
    [
        {"journal": True},  # the SQLite default: rows appended, folded every 50 ms
        {"commit_interval_s": 0.02},  # answers do not wait; rows go in per interval
        {},  # each loop iteration's rows committed before their answers
    ],
    ids=["journal", "commit-interval", "commit-per-answer"],
)
async def test_answers_keep_being_written_while_a_large_prune_runs(target, mode):
    """20,000 old rows go in many small transactions while 400 answers are recorded: none of
    the new rows is lost, none of the old ones is left."""
    seed(target, [500.0 + i / 1e4 for i in range(20_000)])
    backend = make_backend(target, sqlite_synchronous="NORMAL")
    ledger = Ledger(backend, retain_days=400, clock=Clock(), fold_interval_s=0.01, **mode)
    ledger.pruner.batch_rows = 200  # many batches for the answers to land between
    ledger.pruner.duty = 0.5
    await ledger.start()
    try:
        for k in range(8):
            await asyncio.gather(
                *(ledger.record(values(50_000 + k * 50 + j, NOW)) for j in range(50))
            )
            await asyncio.sleep(0)
        assert ledger.pruner.wait_passes(1)
    finally:
        await ledger.close()
    assert ids(target) == {f"r{50_000 + i}" for i in range(400)}


def test_batches_are_bounded_and_a_pass_stops_when_asked(tmp_path):
    target = str(tmp_path / "ledger.sqlite")
    seed(target, [500.0] * 3000)
    backend = make_backend(target)
    limits: list[int] = []
    real = backend.prune

    def counted(before_ts, limit):
        limits.append(limit)
        return real(before_ts, limit)

    backend.prune = counted
    assert prune_before(backend, NOW, batch_rows=100, duty=1.0) == 3000
    assert len(limits) > 3 and max(limits) <= 5000  # never one transaction for them all
    seed(target, [500.0] * 500, start=10_000)
    import threading

    stop = threading.Event()
    stop.set()
    assert prune_before(backend, NOW, batch_rows=100, duty=1.0, stop=stop) == 0  # closing
    assert len(ids(target)) == 500


def test_a_failed_pass_is_logged_and_the_next_one_prunes(tmp_path, caplog):
    target = str(tmp_path / "ledger.sqlite")
    seed(target, [500, 1])
    backend = make_backend(target)
    real, calls = backend.prune, []

    def flaky(before_ts, limit):
        calls.append(limit)
        if len(calls) == 1:
            raise OSError("database is locked")
        return real(before_ts, limit)

    backend.prune = flaky
    pruner = LedgerPruner(backend, 400, interval_s=3600, clock=Clock())
    with caplog.at_level(logging.WARNING, "tidegate.ledger"):
        pruner.start()
        try:
            assert pruner.wait_passes(1)
            assert "database is locked" in caplog.text and ids(target) == {"r0", "r1"}
            pruner.wake()
            assert pruner.wait_passes(2)
        finally:
            pruner.close()
    assert ids(target) == {"r1"} and pruner.last_error is None


def test_reports_reaching_before_pruned_rows_say_so(target):
    seed(target, [500, 300, 10, 1])
    ledger = Ledger(target)
    query = ledger.query
    whole = build_report(query, ReportFilter(), lambda t, m: 500.0).as_dict()
    assert "note" not in whole  # nothing pruned: nothing to say
    assert prune_before(ledger.backend, NOW - 400 * DAY_S) == 1
    for since in (None, NOW - 450 * DAY_S):
        report = build_report(query, ReportFilter(since_ts=since), lambda t, m: 500.0)
        doc = report.as_dict()
        assert doc["pruned_before_ts"] == pytest.approx(NOW - 400 * DAY_S)
        assert "pruned" in doc["note"] and "2025-08-17" in doc["note"]
        assert doc["tenants"]["acme"]["requests"] == 3
        assert render_table(report).splitlines()[-1].startswith("note: rows before 2025-08-17")
    recent = build_report(query, ReportFilter(since_ts=NOW - 30 * DAY_S), lambda t, m: 500.0)
    assert "note" not in recent.as_dict()  # a window after the horizon is whole
    ledger.backend.close()


def test_retain_days_settings():
    assert LedgerSettings().retain_days == 400
    with pytest.raises(ValueError, match="at least 32"):
        LedgerSettings(retain_days=7)
    assert Ledger.from_settings(LedgerSettings(retain_days=0), _tmp()).pruner is None


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="tidegate-retention-"))


def test_cli_prunes_before_a_date_and_prints_the_count(tmp_path, capsys):
    target = str(tmp_path / "ledger.sqlite")
    seed(target, [500, 450, 10])  # 2025-05-09, 2025-06-28, 2026-09-11
    argv = ["ledger", "prune", "--data-dir", str(tmp_path), "--before", "2025-07-01"]
    assert main(argv + ["--dry-run"]) == 0
    assert "would prune 2 rows" in capsys.readouterr().out and len(ids(target)) == 3
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("pruned 2 rows from sqlite:") and "2025-07-01T00:00:00Z" in out
    assert ids(target) == {"r2"}
    assert main(["report", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tenants"]["acme"]["requests"] == 1 and "2025-07-01" in doc["note"]


def test_cli_prunes_a_postgres_ledger(postgres_url, capsys):
    seed(postgres_url, [500, 10])
    assert main(["ledger", "prune", "--ledger", postgres_url, "--before", "2026-01-01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pruned 1 rows from postgresql://") and ids(postgres_url) == {"r1"}


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--before", "last tuesday"], "neither epoch seconds nor an ISO 8601"),
        (["--before", "2999-01-01"], "is in the future"),
        (["--before", "2025-01-01", "--data-dir", "/nonexistent"], "no ledger at"),
        ([], "the following arguments are required: --before"),
    ],
)
def test_cli_mistakes_are_one_line(argv, says, capsys):
    try:
        code = main(["ledger", "prune", *argv])
    except SystemExit as done:  # (argparse's own errors exit)
        code = done.code
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["ledger", "prune", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--before" in out and "--data-dir" in out and "--dry-run" in out
    assert main(["ledger"]) == 2
    assert "tidegate ledger prune --before DATE" in capsys.readouterr().err
