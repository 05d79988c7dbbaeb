"""The embedded ledger backend: one SQLite file in WAL mode (fsync per commit when `full`)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from .migrations import MIGRATIONS, refuse_newer
from .retention import HORIZON as _HORIZON
from .row import STORED_COLUMNS, keyed

_INSERT = f"INSERT INTO requests ({', '.join(STORED_COLUMNS)}) VALUES "
_ONE_ROW = f"({', '.join('?' * len(STORED_COLUMNS))})"
_ONCE = " ON CONFLICT (row_key) DO NOTHING"  # a row written again (gateway.ledger.row)
# Rows per INSERT statement. One multi-row statement is one sqlite3_step, so the writer thread
# gives the GIL up and waits to get it back once, not once per row: with executemany, a loaded
# event loop made a 118-row commit take 20 ms (5 ms switch interval per hand-back).
_CHUNK_ROWS = 500  # 500 x 18 parameters, under SQLite's 32,766 limit


# the oldest rows first, through the ts index: a batch is a short range of it
_PRUNE = (
    "DELETE FROM requests WHERE rowid IN "
    "(SELECT rowid FROM requests WHERE ts < ? ORDER BY ts LIMIT ?)"
)


def _insert(count: int) -> str:
    return _INSERT + ", ".join([_ONE_ROW] * count) + _ONCE


class SqliteBackend:
    """``write`` runs on the ledger's writer thread, ``query`` on any thread (own connection).

    ``synchronous=FULL`` makes a commit durable against power loss, not only a process crash;
    with group commit one fsync covers a whole batch, so it costs little throughput."""

    placeholder = "?"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous.upper()
        self._writer: sqlite3.Connection | None = None
        self._on_loop: sqlite3.Connection | None = None  # write_now's own connection
        self._journal: sqlite3.Connection | None = (
            None  # the journal's folder (gateway.ledger.journal)
        )
        # Without an fsync a commit is a write into the page cache (~100 us): the ledger commits
        # on the event loop itself, no hand-off to the writer thread and back (see Ledger).
        self.fast_commit = self.synchronous in ("NORMAL", "OFF")
        self._pruner: sqlite3.Connection | None = None  # the retention thread's (prune)

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        return db

    def migrate(self) -> int:
        """Apply the migrations this file lacks, each in its own transaction; the version."""
        try:
            db = self._connect()
        except sqlite3.OperationalError as exc:  # ("unable to open database file": which, why?)
            raise sqlite3.OperationalError(f"ledger {self.path}: {exc}{_why(self.path)}") from None
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            found = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
            refuse_newer(found, str(self.path))  # (before it is touched)
            for migration in MIGRATIONS:
                db.execute("BEGIN IMMEDIATE")  # one migrator at a time, even across processes
                try:
                    done = db.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                    ).fetchone()
                    if not done:
                        for statement in migration.sqlite:
                            db.execute(statement)
                        db.execute(
                            "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                            (migration.version, migration.name, time.time()),
                        )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        finally:
            db.close()

    def write(self, rows: list[tuple]) -> None:
        """Insert ``rows`` in one transaction; durable when this returns."""
        if self._writer is None:
            self._writer = self._connect()
        try:
            _insert_rows(self._writer, rows)
        except BaseException:
            self._reset()
            raise

    def write_now(self, rows: list[tuple]) -> None:
        """``write`` for the event loop's thread: its own connection, which never waits for a
        lock (busy: raises at once) and never checkpoints (``checkpoint``, on the writer thread,
        does: a checkpoint fsyncs the database file)."""
        if self._on_loop is None:
            db = self._connect()
            db.execute("PRAGMA busy_timeout = 0")
            db.execute("PRAGMA wal_autocheckpoint = 0")
            self._on_loop = db
        try:
            _insert_rows(self._on_loop, rows)
        except BaseException:
            self._on_loop.close()
            self._on_loop = None
            raise

    def journal_folded(self) -> int:
        """The last journal segment folded into this database (0: none)."""
        found = self.query("SELECT folded_segment FROM ledger_journal WHERE id = 1")
        return int(found[0][0]) if found else 0

    def write_journal(self, rows: list[tuple], segment: int) -> None:
        """Insert a journal segment's rows and record the segment as folded, in one
        transaction: after a crash the segment is folded either wholly or not at all."""
        if self._journal is None:
            self._journal = self._connect()
        db = self._journal
        try:
            _insert_rows(
                db, rows, ("INSERT OR REPLACE INTO ledger_journal VALUES (1, ?)", (segment,))
            )
        except BaseException:
            db.close()
            self._journal = None
            raise

    def prune(self, before_ts: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest rows older than ``before_ts`` and record how far
        back rows are gone, in one short transaction (its own connection: the pruning thread's).
        Busy (another writer holds the lock past a moment): raises, the pruner tries later."""
        if self._pruner is None:
            self._pruner = self._connect()
            self._pruner.execute("PRAGMA busy_timeout = 200")
        db = self._pruner
        try:
            db.execute("BEGIN IMMEDIATE")
            deleted = db.execute(_PRUNE, (before_ts, limit)).rowcount
            if deleted:
                db.execute(_HORIZON.replace("GREATEST", "MAX"), (before_ts,))
            db.execute("COMMIT")
            return deleted
        except BaseException:
            db.close()
            self._pruner = None
            raise

    def checkpoint(self) -> None:
        """Copy the WAL into the database file as far as readers allow (writer thread)."""
        if self._writer is None:
            self._writer = self._connect()
        self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _reset(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except sqlite3.Error:
                pass
            self._writer = None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        db = self._connect()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def close(self) -> None:
        self._reset()
        for db in (self._on_loop, self._journal, self._pruner):
            if db is not None:
                db.close()
        self._on_loop = self._journal = self._pruner = None


def _why(path: Path) -> str:
    """Why a database file may not open, as an operator would check: its directory."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return f" ({path.parent} is on a read-only file system)"
    except OSError as exc:
        return f" ({path.parent}: {exc.strerror})"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f" ({path.parent} is not writable by this user)"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return " (the file is not readable and writable by this user)"
    return ""


def _insert_rows(db: sqlite3.Connection, rows: list[tuple], also: tuple | None = None) -> None:
    """``rows`` in one transaction, with the statement ``also`` (sql, params) when given."""
    rows = keyed(rows)
    if len(rows) <= _CHUNK_ROWS and also is None:  # one statement commits itself: no BEGIN
        db.execute(_insert(len(rows)), [value for row in rows for value in row])  # (-12 % CPU)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), _CHUNK_ROWS):
            chunk = rows[start : start + _CHUNK_ROWS]
            db.execute(_insert(len(chunk)), [value for row in chunk for value in row])
        if also is not None:
            db.execute(*also)
        db.execute("COMMIT")
    except BaseException:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the caller drops this connection anyway
        raise
