"""``tidegate report`` as an ops person pipes it: into ``head`` (the reader closes early)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import astuple

from gateway.ledger import LedgerRow, make_backend


def test_a_report_piped_into_head_ends_without_a_traceback(tmp_path):
    backend = make_backend(str(tmp_path / "ledger.sqlite"))
    backend.migrate()
    rows = [
        LedgerRow(
            id=f"r{i}",
            ts=1_780_000_000.0 + i,
            tenant=f"tenant-{i:05d}",
            model="mlp",
            path="vm",
            status=200,
            latency_ms=12.5,
            workers=0,
            vm_cost_usd=1e-6,
            function_cost_usd=0.0,
            store_cost_usd=0.0,
            cost_usd=1e-6,
        )
        for i in range(4000)  # ~600 KB of CSV: far more than a pipe holds
    ]
    backend.write([astuple(r) for r in rows])
    report = f"{sys.executable} -m ops report --data-dir {tmp_path} --format csv --by model,day"
    done = subprocess.run(
        f"{report} | head -n 2", shell=True, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.splitlines()[1].startswith("tenant-00000,"), done.stdout
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


def test_a_ledger_file_that_does_not_exist_is_one_line_and_stays_absent(tmp_path):
    missing = tmp_path / "missing.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "ops", "report", "--ledger", str(missing), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and f"no ledger at {missing}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not missing.exists()  # (opening it would have made an empty SQLite file)
