"""A ledger a newer Tidegate migrated (a downgrade): nothing writes to it, and it says why;
`tidegate report` still reads it, with a warning."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.ledger import Ledger, make_backend, row_values
from gateway.ledger.migrations import LATEST_VERSION, SchemaTooNew
from ops.cli import main

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
NEWER = LATEST_VERSION + 1


def _newer_ledger(target: str) -> None:
    """A ledger with one row, migrated since by a release this one does not know."""
    backend = make_backend(target)
    backend.migrate()
    backend.write([row_values("r1", time.time(), "acme", "mlp", "vm", 200, 3.0, cost_usd=0.25)])
    marker = backend.placeholder
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as db:
            db.execute(f"INSERT INTO schema_migrations VALUES ({marker}, 'next', 0)", (NEWER,))
    else:
        with sqlite3.connect(target) as db:
            db.execute("INSERT INTO schema_migrations VALUES (?, 'next', 0)", (NEWER,))
    backend.close()


def _state(target: str) -> tuple:
    backend = make_backend(target)
    return (
        backend.query("SELECT COUNT(*) FROM requests")[0][0],
        tuple(backend.query("SELECT version FROM schema_migrations ORDER BY version")),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres_url")


def test_a_newer_ledger_is_refused_with_its_version_and_left_as_it_was(target):
    _newer_ledger(target)
    before = _state(target)
    with pytest.raises(SchemaTooNew) as err:
        Ledger(target)
    assert f"schema version {NEWER}, newer than this Tidegate's ({LATEST_VERSION})" in str(
        err.value
    )
    assert _state(target) == before


def test_serve_does_not_start_on_a_newer_ledger_and_says_why_in_one_line(tmp_path, small_repo):
    _newer_ledger(str(tmp_path / "ledger.sqlite"))
    env = {**os.environ, "TIDEGATE_GRPC_PORT": "-1", "TIDEGATE_BURST__ENABLED": "false"}
    argv = ["serve", "--data-dir", str(tmp_path), "--repo", str(small_repo)]
    proc = subprocess.run(
        [sys.executable, "-m", "ops", *argv, "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"schema version {NEWER}" in lines[0], proc.stderr


def test_report_reads_a_newer_ledger_with_a_warning_and_prune_refuses(tmp_path, capsys):
    _newer_ledger(str(tmp_path / "ledger.sqlite"))
    before = _state(str(tmp_path / "ledger.sqlite"))
    assert main(["report", "--data-dir", str(tmp_path), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "acme" in out and f"schema version {NEWER}" in err
    assert main(["ledger", "prune", "--data-dir", str(tmp_path), "--before", "2001-01-01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"schema version {NEWER}" in err[0], err
    assert _state(str(tmp_path / "ledger.sqlite")) == before
