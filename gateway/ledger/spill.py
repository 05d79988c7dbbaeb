"""Rows a stopping gateway could not get into its database, kept in a file until the next start.

A SIGTERM during a database outage used to take over a minute: uvicorn waited 30 s for the
requests whose rows could not be committed (they then got a 500), and the ledger 30 s more. Now
the stop spills those rows into ``ledger-spill-<ledger>-<pid>-<ns>.jsonl`` in the data directory
(one JSON row a line, fsynced with its directory; ``<ledger>`` a hash of the database's name, so
two ledgers sharing a directory never take each other's rows), answers their requests, and the
next start of a gateway on that ledger writes the file into it before anything else. Each row carries its key (``gateway.ledger.row``),
so a row the database did take (a commit whose answer was lost) is not written twice.

A running gateway drains them too (``Ledger.spill_scan_s``): a replica still serving while another
on its data directory stopped in the outage writes that one's file once the database is back,
not at its own next restart. A file is taken only under its lock: the process writing it holds
an exclusive ``flock`` until it closes it, so no start or drain takes a file still being
appended to (its later rows went to an unlinked file, and were lost).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

import orjson

log = logging.getLogger("tidegate.ledger")


def _prefix(ledger: str) -> str:
    """The spill files' prefix for a ledger (``backend.describe()``: never a password). A
    PostgreSQL ledger is named by its database alone: after a failover its host may change. An
    SQLite one by its resolved path: a gateway started with ``--data-dir .tidegate`` and again
    with ``/srv/.tidegate`` (or through a symlink) is one ledger, and its rows were left behind
    as "another ledger's"."""
    if ledger.startswith("postgresql://"):
        ledger = "postgresql/" + ledger.rsplit("/", 1)[-1]
    elif ledger.startswith("sqlite:"):
        ledger = "sqlite:" + str(Path(ledger[len("sqlite:") :]).resolve())
    return _hashed(ledger)


def _prefixes(ledger: str) -> set[str]:
    """The prefixes a file of ``ledger`` may carry: also the path as written (before ops25)."""
    return {
        _prefix(ledger),
        _prefix(ledger) if ledger.startswith("postgresql://") else _hashed(ledger),
    }


def _hashed(name: str) -> str:
    return f"ledger-spill-{hashlib.sha1(name.encode()).hexdigest()[:12]}-"


class SpillFile:
    """An append-only file of rows; ``append`` returns once the rows are on disk."""

    def __init__(self, directory: Path, ledger: str):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_prefix(ledger)}{os.getpid()}-{time.time_ns()}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held until close: nobody replays it meanwhile
        self.rows = 0
        _fsync_dir(directory)  # (the file's name survives a power loss, too)

    def append(self, rows: list[tuple]) -> None:
        if self._fd < 0:  # (closed: its number may be another file's by now)
            raise OSError(f"spill file {self.path.name} is closed")
        data = b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in rows)
        os.write(self._fd, data)
        os.fsync(self._fd)
        self.rows += len(rows)

    def close(self) -> None:
        """Its lock goes with it: from now on a start or a drain may take the file."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def pending(directory: Path | None, ledger: str) -> list[Path]:
    """``ledger``'s spill files in ``directory`` (some may be in use: ``replay`` skips those)."""
    if directory is None or not directory.is_dir():
        return []
    return sorted({p for prefix in _prefixes(ledger) for p in directory.glob(prefix + "*.jsonl")})


def replay(backend, directory: Path | None, ledger: str) -> int:
    """Write the rows of every spill file of ``ledger`` in ``directory`` into ``backend`` (rows
    it holds already are skipped by their keys), deleting each file once it is in. A file
    another writer still holds open is left for later. Returns the rows written."""
    if directory is None or not directory.is_dir():
        return 0
    total, mine = 0, tuple(_prefixes(ledger))
    others = [p.name for p in directory.glob("ledger-spill-*.jsonl") if not p.name.startswith(mine)]
    if others:
        log.warning("ledger: spill files of another ledger left in %s: %s", directory, others)
    for path in pending(directory, ledger):
        total += _replay_file(backend, path)
    return total


def _replay_file(backend, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:  # another gateway took it meanwhile
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is still appending (a stop under way)
            return 0
        if os.fstat(fd).st_nlink == 0:  # taken by another gateway between open and lock
            return 0
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read()
        rows = []
        for line in data.splitlines():
            try:
                rows.append(tuple(orjson.loads(line)))
            except orjson.JSONDecodeError:  # a write cut short by a crash: never answered
                log.warning("ledger spill: skipped a torn line in %s", path.name)
        if rows:
            backend.write(rows)
            log.warning("ledger: %d rows a stopping gateway spilled to %s written", len(rows), path)
        path.unlink()
        return len(rows)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
