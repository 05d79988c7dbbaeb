"""The ledger's journal: each row appended to a file before its answer, folded into SQLite later.

Committing one row to SQLite on the request path costs about 20 system calls (WAL frames for the
table and its two indexes, the WAL-index locks) and a loop iteration of its own; with one client
on the small ``mlp`` model that was a quarter of the gateway's CPU per request. Here a row is
one line of JSON copied into an append-only file mapped into memory (``mmap``, shared): no system
call, and the GIL is kept (a ``write`` per row let other threads take it mid-request). Once the
copy is done the row is in the page cache: a SIGKILL or a crash of the gateway loses none of it,
the same guarantee as SQLite's ``synchronous = normal`` (neither survives a power loss). A
segment's blocks are reserved when it is opened (a full disk is an error then, never a SIGBUS on
a copy); it is cut to its rows when closed, and a crash leaves it padded with zeros, which
recovery ignores.

A thread folds the rows into SQLite every ``fold_interval_s``: the current segment file is closed
and a new one takes the rows that follow, the closed segment's rows are inserted in one
transaction that also records the segment's number (``ledger_journal``), then its file is
deleted. On start every segment above the recorded number is folded first, so a crash at any
point neither loses nor doubles a row; a torn last line (a ``write`` cut short) was never
acknowledged (a copy cut short) and is skipped. What this trades: another process reading the SQLite file sees a
row up to ``fold_interval_s`` after its answer (``Ledger.query`` folds first, so the gateway's
own reports do not lag).

One process at a time owns a database's journal: it holds an exclusive ``flock`` on
``<database>.lock`` (released by the kernel however the process dies). A second gateway on
the same data directory is refused (``JournalBusy``), and ``fold_left_behind`` (used by ``tidegate
report``) folds a crashed gateway's rows only when no gateway holds the lock, so two folders never
insert the same segment.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import threading
from pathlib import Path

import orjson

log = logging.getLogger("tidegate.ledger")
_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
# A segment's room, ~500 rows: a full one is closed and the next opened. (1 MiB was 20 MB/s of
# block reserving and freeing at a 50 ms fold: 1-5 % more gateway CPU per request on mlp.)
SEGMENT_BYTES = 1 << 17


class JournalBusy(RuntimeError):
    """Another live process owns this database's journal."""


def lock_path(database: Path) -> Path:
    return Path(database).with_name(Path(database).name + ".lock")


def _take_lock(database: Path) -> int | None:
    """The journal's lock, held (a file descriptor), or None if another process holds it."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def holder(database: Path) -> str | None:
    """The pid (as written) of the process owning this database's journal, or None if free."""
    path = lock_path(database)
    if not path.exists():
        return None
    fd = _take_lock(database)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def fold_left_behind(backend, database: Path) -> int | None:
    """Fold the segments a crashed gateway left behind, if no live process owns the journal:
    the rows folded, or None when a gateway holds it (it folds them within its interval)."""
    database = Path(database)
    prefix = database.name + ".journal."
    if not any(_segments(database.parent, prefix)):
        return 0
    fd = _take_lock(database)
    if fd is None:
        return None
    try:
        return _fold_segments(backend, database.parent, prefix)
    finally:
        os.close(fd)


class Journal:
    """Append-only segments ``<database>.journal.<n>`` beside the database; see the module doc.

    ``backend`` must offer ``journal_folded()`` (the last segment folded) and
    ``write_journal(rows, segment)`` (the rows and the segment's number in one transaction)."""

    def __init__(self, backend, database: Path, *, fold_interval_s: float = 0.05):
        self.backend = backend
        self.dir = Path(database).parent
        self.prefix = Path(database).name + ".journal."
        self.fold_interval_s = fold_interval_s
        self._lock = threading.Lock()  # the open segment: fd, number, rows
        self._fold_lock = threading.Lock()  # one folder at a time (thread, query, close)
        self._due = threading.Event()  # the open segment has rows
        self._closing = threading.Event()
        self._unfolded: list[tuple[int, list[tuple]]] = []  # closed segments not yet in SQLite
        self._thread: threading.Thread | None = None
        self.folds = 0
        self.rows_folded = 0
        self.fold_failures = 0
        self._lock_fd = _take_lock(database)
        if self._lock_fd is None:
            raise JournalBusy(
                f"ledger {database} is in use by another gateway (pid {holder(database)}): "
                "give each gateway its own data directory"
            )
        try:  # folded at start: the segments a crash left behind
            self.rows_recovered = _fold_segments(backend, self.dir, self.prefix)
            self._seq = max([self.backend.journal_folded(), *self._segments()], default=0) + 1
            self._segment: _Segment | None = _Segment(self._path(self._seq))
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._rows: list[tuple] = []

    # the request path ---------------------------------------------------------------------------

    def append(self, values: tuple) -> None:
        """Write one row; it survives a crash of this process once this returns (OSError: it
        was not written, and the segment is closed so a torn line stays at its end)."""
        line = orjson.dumps(values, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            segment = self._segment
            if segment is None:  # (opening the last one failed)
                segment = self._segment = _Segment(self._path(self._seq))
            if not segment.write(line):
                self._rotate_locked()  # full: its rows are folded, the next one takes this row
                segment = self._segment
                if segment is None or not segment.write(line):
                    raise OSError(f"ledger journal: a row of {len(line)} bytes fits no segment")
            rows = self._rows
            rows.append(values)
        if len(rows) == 1:
            self._due.set()  # (once per segment: the folder waits for its first row)

    # folding --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-journal", daemon=True)
            self._thread.start()

    def fold_now(self) -> None:
        """Fold every row written so far into SQLite (raises if the database refuses)."""
        with self._fold_lock:
            with self._lock:
                self._rotate_locked()
            self._fold_closed()

    def close(self) -> None:
        """Fold what is left and stop the folder (rows SQLite refuses stay in their segments,
        for the next start)."""
        self._closing.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None
        try:
            self.fold_now()
        except Exception as exc:  # noqa: BLE001 - the segments stay: folded on the next start
            log.error("ledger journal: rows left in %s* for the next start: %s", self.prefix, exc)
        with self._lock:
            if self._segment is not None:
                self._segment.close()
                self._segment = None
        self._remove_if_empty(self._seq)
        os.close(self._lock_fd)  # (after the last fold: another process may take over now)

    def _run(self) -> None:
        delay_s = self.fold_interval_s
        while not self._closing.is_set():
            self._due.wait()
            if self._closing.wait(delay_s):
                return  # close() folds what is left
            try:
                self.fold_now()
                delay_s = self.fold_interval_s
            except Exception as exc:  # noqa: BLE001 - kept in their segments, retried
                self.fold_failures += 1
                delay_s = min(2.0, max(0.05, delay_s * 2))
                log.warning("ledger journal: fold failed, retrying in %.2f s: %s", delay_s, exc)
                self._due.set()

    def _rotate_locked(self) -> None:
        """Close the open segment (if it has rows) and open the next; caller holds ``_lock``."""
        if not self._rows:
            return
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        self._unfolded.append((self._seq, self._rows))
        self._seq += 1
        self._rows = []
        self._due.clear()
        self._segment = _Segment(self._path(self._seq))  # (an OSError: append opens it)

    def _fold_closed(self) -> None:
        while self._unfolded:
            seq, rows = self._unfolded[0]
            self.backend.write_journal(rows, seq)
            self._unfolded.pop(0)
            self.folds += 1
            self.rows_folded += len(rows)
            self._path(seq).unlink(missing_ok=True)

    # start-up -------------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return _segments(self.dir, self.prefix)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{self.prefix}{seq}"

    def _remove_if_empty(self, seq: int) -> None:
        path = self._path(seq)
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except FileNotFoundError:
            pass


def _segments(directory: Path, prefix: str) -> list[int]:
    found = []
    for path in directory.glob(prefix + "*"):
        suffix = path.name[len(prefix) :]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def _fold_segments(backend, directory: Path, prefix: str) -> int:
    """Fold the segments a crash left behind, in order; delete those folded already. The caller
    holds the journal's lock. Returns the rows folded."""
    folded = backend.journal_folded()
    recovered = 0
    for seq in _segments(directory, prefix):
        path = directory / f"{prefix}{seq}"
        if seq > folded:
            rows = _read_rows(path)
            if rows:
                backend.write_journal(rows, seq)
                recovered += len(rows)
                log.info("ledger journal: %d rows recovered from %s", len(rows), path.name)
        path.unlink(missing_ok=True)
    return recovered


def _read_rows(path: Path) -> list[tuple]:
    rows = []
    # (a segment a crash left open is padded with zeros after its last row)
    for number, line in enumerate(path.read_bytes().rstrip(b"\0").split(b"\n"), 1):
        if not line:
            continue
        try:
            rows.append(tuple(orjson.loads(line)))
        except orjson.JSONDecodeError:  # a write cut short: never acknowledged
            log.warning("ledger journal: skipped a torn line %d in %s", number, path.name)
    return rows


class _Segment:
    """One segment file mapped into memory: ``write`` copies a line after the last one."""

    __slots__ = ("fd", "map", "used")

    def __init__(self, path: Path, size: int = SEGMENT_BYTES):
        self.fd = os.open(path, _FLAGS, 0o644)
        try:
            reserve = getattr(os, "posix_fallocate", None)
            if reserve is not None:
                reserve(self.fd, 0, size)  # (ENOSPC here, not a SIGBUS on a later copy)
            else:
                os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise
        self.used = 0

    def write(self, line: bytes) -> bool:
        """Copy ``line`` in; False when it does not fit."""
        end = self.used + len(line)
        if end > len(self.map):
            return False
        self.map[self.used : end] = line
        self.used = end
        return True

    def close(self) -> None:
        """Unmap it and cut the file to the rows written."""
        self.map.close()
        try:
            os.ftruncate(self.fd, self.used)
        finally:
            os.close(self.fd)
