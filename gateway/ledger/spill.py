"""Rows a stopping gateway could not get into its database, kept in a file until the next start.

A SIGTERM during a database outage used to take over a minute: uvicorn waited 30 s for the
requests whose rows could not be committed (they then got a 500), and the ledger 30 s more. Now
the stop spills those rows into ``ledger-spill-<ledger>-<pid>-<ns>.jsonl`` in the data directory
(one JSON row a line, fsynced with its directory; ``<ledger>`` a hash of the database's name, so
two ledgers sharing a directory never take each other's rows), answers their requests, and the
next start of a gateway on that ledger writes the file into it before anything else. Each row carries its key (``gateway.ledger.row``),
so a row the database did take (a commit whose answer was lost) is not written twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import orjson

log = logging.getLogger("tidegate.ledger")


def _prefix(ledger: str) -> str:
    """The spill files' prefix for a ledger (``backend.describe()``: never a password). A
    PostgreSQL ledger is named by its database alone: after a failover its host may change."""
    if ledger.startswith("postgresql://"):
        ledger = "postgresql/" + ledger.rsplit("/", 1)[-1]
    return f"ledger-spill-{hashlib.sha1(ledger.encode()).hexdigest()[:12]}-"


class SpillFile:
    """An append-only file of rows; ``append`` returns once the rows are on disk."""

    def __init__(self, directory: Path, ledger: str):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_prefix(ledger)}{os.getpid()}-{time.time_ns()}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        self.rows = 0
        _fsync_dir(directory)  # (the file's name survives a power loss, too)

    def append(self, rows: list[tuple]) -> None:
        data = b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows)
        os.write(self._fd, data)
        os.fsync(self._fd)
        self.rows += len(rows)

    def close(self) -> None:
        os.close(self._fd)


def replay(backend, directory: Path | None, ledger: str) -> int:
    """Write the rows of every spill file of ``ledger`` in ``directory`` into ``backend`` (rows
    it holds already are skipped by their keys), deleting each file once it is in. Returns the
    rows written."""
    if directory is None or not directory.is_dir():
        return 0
    total, mine = 0, _prefix(ledger)
    others = [p.name for p in directory.glob("ledger-spill-*.jsonl") if not p.name.startswith(mine)]
    if others:
        log.warning("ledger: spill files of another ledger left in %s: %s", directory, others)
    for path in sorted(directory.glob(mine + "*.jsonl")):
        rows = []
        for line in path.read_bytes().splitlines():
            try:
                rows.append(tuple(orjson.loads(line)))
            except orjson.JSONDecodeError:  # a write cut short by a crash: never answered
                log.warning("ledger spill: skipped a torn line in %s", path.name)
        if rows:
            backend.write(rows)
            log.warning("ledger: %d rows a stopping gateway spilled to %s written", len(rows), path)
        path.unlink()
        total += len(rows)
    return total


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
