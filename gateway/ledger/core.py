# size: ~480 lines: the one writer, its three ways to commit (loop, thread, journal) and their
# shared retry and shutdown (with its spill, and the drain of spill files while running); the
# journal, spill file and retention are in their own files
"""The ledger: ``await ledger.record(row)`` returns once the row is durable (group commit).

A single writer thread takes every row queued since its last commit, writes them in one
transaction and commits, then wakes the requests waiting on them. Under load a commit covers
many rows, so durability per response costs one fsync per batch, not per request. A failed
write leaves its rows at the head of the queue and is retried with backoff: rows are never
dropped, and their requests are not answered until the rows are in.

Where a commit does not fsync (SQLite with ``synchronous = normal``, the gateway's default) the
rows of one event-loop iteration are committed on the loop itself: the hand-off to the writer
thread and back (a futex wake, GIL hand-offs, a wake of the loop) cost more than the commit.
Measured in-process, mlp, one client: 1041 -> ~550 us of gateway CPU per request. The writer
thread then only checkpoints, and takes over the rows of a commit that failed (and retries).

With ``journal`` (the gateway's default for SQLite without fsync: ``[ledger] journal``) a row
is one ``write`` to an append-only file before ``record`` returns, and a thread folds the rows
into SQLite in batches (``gateway.ledger.journal``): as durable against a crash or SIGKILL,
without SQLite's ~20 system calls and a loop iteration per request.

With a ``commit_interval_s`` (``[ledger] commit_interval_ms``) ``record`` returns at once and each
interval's rows are committed together, off the request path (one INSERT per interval, not ~13
system calls per loop iteration), so an answer can go out before its row is on disk: a clean
shutdown writes every queued row first; a SIGKILL, crash or power loss loses the last interval's.

While the database fails or hangs (``failing``) new requests are refused, 503. Once the stop has
begun (``release``), rows the database does not take go to a spill file instead
(``gateway.ledger.spill``), written into the database at the next start: their requests are
answered, and a stop during an outage takes ``shutdown_timeout_s`` at most, not a minute.
The writer thread of a running gateway also writes, every ``spill_scan_s`` (``[ledger]``) while
the database takes rows, the spill files another gateway on its data directory left (a replica
stopped in the outage): they reach a shared database without waiting for a restart here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from operator import attrgetter
from pathlib import Path
from typing import Protocol

from .journal import Journal
from .retention import LedgerPruner
from .row import COLUMNS, LedgerRow
from .spill import SpillFile, replay

_AS_TUPLE = attrgetter(*COLUMNS)  # dataclasses.astuple deep-copies: 10x slower
# Commits on the loop leave the WAL to grow; the writer thread copies it back this often (SQLite
# itself would at 1,000 pages, blocking the committing thread on an fsync of the database).
CHECKPOINT_EVERY_COMMITS = 256

log = logging.getLogger("tidegate.ledger")


class LedgerBackend(Protocol):
    placeholder: str  # the driver's parameter marker: "?" or "%s"

    def describe(self) -> str: ...
    def migrate(self) -> int: ...
    def write(self, rows: list[tuple]) -> None: ...
    def query(self, sql: str, params: tuple = ()) -> list[tuple]: ...
    def close(self) -> None: ...


def make_backend(target: str | Path, *, sqlite_synchronous: str = "FULL") -> LedgerBackend:
    """``postgresql://...`` (or ``postgres://``) for PostgreSQL, else an SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresBackend

        return PostgresBackend(text)
    from .sqlite import SqliteBackend

    return SqliteBackend(text, synchronous=sqlite_synchronous)


class Ledger:
    def __init__(
        self,
        target: str | Path | LedgerBackend,
        *,
        max_batch_rows: int = 4096,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 2.0,
        commit_interval_s: float = 0.0,
        journal: bool = False,
        fold_interval_s: float = 0.05,
        retain_days: float = 0.0,
        clock=time.time,
        stuck_after_s: float = 5.0,
        spill_dir: Path | None = None,
        shutdown_timeout_s: float = 30.0,
        spill_scan_s: float = 5.0,
    ):
        self.backend = target if hasattr(target, "write") else make_backend(target)
        self.max_batch_rows = max_batch_rows
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.commit_interval_s = commit_interval_s  # > 0: record does not wait (module doc)
        self.stuck_after_s = stuck_after_s  # a write taking longer: the database hangs
        self.schema_version = self.backend.migrate()
        self.shutdown_timeout_s = shutdown_timeout_s
        self.spill_scan_s = spill_scan_s  # how often a running ledger looks for spill files
        self._open_spill(spill_dir)
        # rows appended to a file before the answer, folded into SQLite later (ledger.journal):
        # for an SQLite ledger without fsync (with one, the fsync is the cost), no interval
        self.journal: Journal | None = None
        if (
            journal
            and not commit_interval_s
            and getattr(self.backend, "fast_commit", False)
            and hasattr(self.backend, "write_journal")
        ):
            self.journal = Journal(self.backend, self.backend.path, fold_interval_s=fold_interval_s)
        # rows older than retain_days deleted by a thread of its own (gateway.ledger.retention)
        self.pruner = LedgerPruner(self.backend, retain_days, clock=clock) if retain_days else None
        self._cond = threading.Condition()
        self._queue: list[tuple[tuple, asyncio.Future]] = []  # only the writer removes (head)
        self._closing = False
        self._writer_idle = False  # the writer waits on _cond: a new row must wake it
        self._thread: threading.Thread | None = None
        self._on_loop = bool(getattr(self.backend, "fast_commit", False))
        # rows waiting for this iteration's commit, per event loop (tests run several)
        self._loop_rows: dict[asyncio.AbstractEventLoop, list[tuple[tuple, asyncio.Future]]] = {}
        self._checkpoint_due = False
        self.commits = 0  # batches committed
        self.rows_written = 0
        self.write_failures = 0  # failed attempts (each was retried)
        self.last_error: str | None = None
        self._failing = False  # the last write failed; its rows wait for a retry
        self._writing_since: float | None = None  # the writer thread's write under way
        self._journal_fallbacks = 0  # rows the journal refused in this outage (disk full ...)
        # row keys: 64 random bits per ledger opened, then a count (unique across replicas)
        self._key_prefix = os.urandom(8).hex()
        self._key_seq = itertools.count()

    def _open_spill(self, spill_dir: Path | None) -> None:
        """Where a stop during an outage leaves rows (gateway.ledger.spill): the data directory,
        an SQLite ledger's own by default. What an earlier stop left there is written first."""
        path = getattr(self.backend, "path", None)
        self.spill_dir = spill_dir if spill_dir is not None else (path and Path(path).parent)
        self.replayed = replay(self.backend, self.spill_dir, self.backend.describe())
        self._spill: SpillFile | None = None
        self._stopping = False  # release() was called: failed rows spill, not wait
        self._spills = 0  # times the queue went to the spill file (the writer's batch is stale)
        self._next_scan = time.monotonic()  # (the writer's clock for spill files while running)

    @classmethod
    def from_settings(cls, settings, data_dir: Path) -> "Ledger":
        """From a ``LedgerSettings`` (the ``[ledger]`` table)."""
        backend = make_backend(
            settings.target(data_dir), sqlite_synchronous=settings.sqlite_synchronous.upper()
        )
        return cls(
            backend,
            max_batch_rows=settings.max_batch_rows,
            commit_interval_s=settings.commit_interval_ms / 1000.0,
            journal=settings.journal,
            fold_interval_s=settings.journal_fold_ms / 1000.0,
            retain_days=settings.retain_days,
            spill_dir=Path(data_dir),
            shutdown_timeout_s=settings.shutdown_timeout_s,
            spill_scan_s=settings.spill_scan_s,
        )

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
            self._thread.start()
        if self.journal is not None:
            self.journal.start()
        if self.pruner is not None:
            self.pruner.start()

    def release(self) -> int:
        """The stop has begun: from now on rows the database does not take go to a spill file
        (their requests are answered) rather than wait for it. Returns the rows spilled now."""
        self._stopping = True
        return self._spill_queue() if self.failing() is not None else 0

    async def close(self, timeout_s: float | None = None) -> None:
        """Write what is queued (retrying for up to ``timeout_s``, default
        ``shutdown_timeout_s``), spill what is still left, then stop the writer."""
        if timeout_s is None:
            timeout_s = self.shutdown_timeout_s
        if self.pruner is not None:  # (mid-pass: it stops after its batch)
            await asyncio.to_thread(self.pruner.close)
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
        for loop in list(self._loop_rows):
            self._commit_on_loop(loop)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)
            stuck = self._thread.is_alive()
            if stuck and self._spill_queue() == 0 and self.queued:
                log.error(
                    "ledger: %d rows still unwritten at shutdown (%s)", self.queued, self.last_error
                )
            self._thread = None
            if stuck:  # its write may still be inside the backend: leave it to the exit
                if self._spill is not None:  # (but a drain elsewhere may take the file now)
                    self._spill.close()
                return
        if self._spill is not None:
            self._spill.close()
        self.backend.close()

    def _spill_queue(self) -> int:
        """Move the queued rows into the spill file and answer their requests (0: nothing
        queued, no spill directory, or the file cannot be written: they stay queued)."""
        if self.spill_dir is None:
            return 0
        with self._cond:
            batch, self._queue = self._queue, []
            self._spills += 1
        if not batch:
            return 0
        try:
            if self._spill is None:
                self._spill = SpillFile(self.spill_dir, self.backend.describe())
            self._spill.append([row for row, _ in batch])
        except OSError as exc:
            with self._cond:
                self._queue[:0] = batch
            log.error("ledger: %d rows could not be spilled either: %s", len(batch), exc)
            return 0
        log.warning(
            "ledger: the database takes no rows (%s); %d rows kept in %s for the next start",
            self.last_error,
            len(batch),
            self._spill.path,
        )
        _wake([future for _, future in batch if future is not None])
        return len(batch)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def failing(self) -> str | None:
        """Why the database takes no rows now (a write failed, or hangs), else None: requests
        are refused meanwhile (gateway.dispatch), not held unanswered until it is back."""
        if self._failing:
            return self.last_error
        since = self._writing_since  # a database that hangs (stopped, cut off) fails no write
        if since is not None and time.monotonic() - since > self.stuck_after_s:
            return f"a write has waited {time.monotonic() - since:.0f} s for the database"
        return None

    # writing ---------------------------------------------------------------------------------

    async def record(self, row: LedgerRow | tuple) -> None:
        """Queue ``row`` and return once it is committed (with a commit interval: at once).
        The hot path may pass the row's values as a tuple in ``COLUMNS`` order
        (``row_values``): no dataclass built and taken apart per request."""
        if self._thread is None:
            raise RuntimeError("ledger not started")
        values = row if type(row) is tuple else _AS_TUPLE(row)
        # its key (gateway.ledger.row), given once: every retry of this row carries the same
        values = (*values, f"{self._key_prefix}{next(self._key_seq):x}")
        journal = self.journal
        if journal is not None:
            try:
                journal.append(values)  # durable against a crash once written: no wait
                if self._journal_fallbacks:
                    self._journal_back()
                return
            except OSError as exc:  # (disk full ...): the writer thread keeps it and retries
                self._journal_failed(exc)
        if self._spill is not None:  # stopping in an outage (release): no wait for the database
            try:
                self._spill.append([values])
                return
            except OSError as exc:
                log.error("ledger: a row could not be spilled: %s", exc)
        loop = asyncio.get_running_loop()
        interval_s = self.commit_interval_s
        future = None if interval_s else loop.create_future()
        if self._on_loop and not self._queue and journal is None:  # (retried rows go first)
            rows = self._loop_rows.get(loop)
            if rows is None:
                rows = self._loop_rows[loop] = []
                if interval_s:
                    loop.call_later(interval_s, self._commit_on_loop, loop)
                else:
                    loop.call_soon(self._commit_on_loop, loop)
            rows.append((values, future))
            if len(rows) == self.max_batch_rows:  # a full batch does not wait for the timer
                loop.call_soon(self._commit_on_loop, loop)
        else:
            with self._cond:
                self._queue.append((values, future))
                if self._writer_idle:  # a busy writer takes this row with its next batch
                    self._cond.notify()
        # A request cancelled while it waits (client gone) still gets its row: the row is in
        # the batch already, and a cancelled future is skipped when the batch resolves.
        if future is not None:
            await future

    def _journal_failed(self, exc: OSError) -> None:
        """Logged once an outage (a warning a row flooded the log at the request rate)."""
        self.last_error = f"ledger journal: {exc}"
        if not self._journal_fallbacks:
            log.warning("%s; rows go to the database until it can be written", self.last_error)
        self._journal_fallbacks += 1

    def _journal_back(self) -> None:
        log.warning(
            "ledger journal: written again (%d rows went to the database meanwhile)",
            self._journal_fallbacks,
        )
        self._journal_fallbacks = 0

    def _commit_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit this loop iteration's rows here; on failure the writer thread retries them."""
        batch = self._loop_rows.pop(loop, [])
        if not batch:
            return
        try:
            self.backend.write_now([row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - any failure: the thread keeps and retries
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._failing = True
            with self._cond:
                self._queue.extend(batch)
                self._cond.notify()
            return
        self.commits += 1
        self.rows_written += len(batch)
        if self.commits % CHECKPOINT_EVERY_COMMITS == 0:
            with self._cond:
                self._checkpoint_due = True
                self._cond.notify()
        try:
            _resolve([future for _, future in batch if future is not None])
        except RuntimeError:  # their loop is closed (close() after the loop): nobody waits
            pass

    def _run(self) -> None:
        delay_s = self.retry_initial_s
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self._checkpoint_due:
                    wait_s = self._scan_wait_s()
                    if wait_s == 0.0:
                        break
                    self._writer_idle = True
                    self._cond.wait(wait_s)
                    self._writer_idle = False
                checkpoint, self._checkpoint_due = self._checkpoint_due, False
                if not self._queue and not checkpoint and self._closing:
                    return  # closing, nothing left
                batch = self._queue[: self.max_batch_rows]
                spills = self._spills
            if checkpoint:
                self._checkpoint()
            if self._scan_wait_s() == 0.0:
                self._drain_spills()
            if not batch:
                continue
            self._writing_since = time.monotonic()
            try:
                self.backend.write([row for row, _ in batch])
            except Exception as exc:  # noqa: BLE001 - any failure: keep the rows, retry
                self.write_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._failing = True
                log.warning(
                    "ledger write of %d rows failed, retrying in %.2f s: %s",
                    len(batch),
                    delay_s,
                    self.last_error,
                )
                with self._cond:
                    self._cond.wait(delay_s)
                delay_s = min(self.retry_max_s, delay_s * 2)
                if self._stopping:  # (release): the rows wait in the spill file, not here
                    self._spill_queue()
                continue
            finally:
                self._writing_since = None
            delay_s = self.retry_initial_s
            with self._cond:
                if spills == self._spills:  # (else the batch went to the spill file meanwhile)
                    del self._queue[: len(batch)]
                self._failing = False
            self.commits += 1
            self.rows_written += len(batch)
            _wake([future for _, future in batch if future is not None])
            if self.commit_interval_s:  # let the next interval's rows gather (close: at once)
                with self._cond:
                    self._cond.wait_for(lambda: self._closing, self.commit_interval_s)

    def _scan_wait_s(self) -> float | None:
        """Seconds until the writer should look for spill files (0: now; None: never, or not
        while the database fails or the ledger closes)."""
        if self.spill_dir is None or self.spill_scan_s <= 0 or self._failing or self._closing:
            return None
        return max(0.0, self._next_scan - time.monotonic())

    def _drain_spills(self) -> None:
        """Write the spill files on the data directory into the database (gateway.ledger.spill):
        a failure leaves them for the next scan."""
        self._next_scan = time.monotonic() + self.spill_scan_s
        self._writing_since = time.monotonic()  # (a database that hangs: failing() says so)
        try:
            written = replay(self.backend, self.spill_dir, self.backend.describe())
        except Exception as exc:  # noqa: BLE001 - the database went again: the next scan
            log.warning("ledger: spill files not written yet: %s: %s", type(exc).__name__, exc)
            return
        finally:
            self._writing_since = None
        self.replayed += written

    def _checkpoint(self) -> None:
        try:
            self.backend.checkpoint()
        except Exception as exc:  # noqa: BLE001 - the next one catches up
            log.warning("ledger checkpoint failed: %s: %s", type(exc).__name__, exc)

    # reading ---------------------------------------------------------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run ``sql`` with ``{p}`` standing for the backend's parameter marker."""
        if self.journal is not None:
            self.journal.fold_now()  # rows answered so far are in what this reads
        return self.backend.query(sql.format(p=self.backend.placeholder), params)

    def spent_by_tenant(self, since_ts: float = 0.0) -> dict[str, float]:
        sql = "SELECT tenant, SUM(cost_usd) FROM requests WHERE ts >= {p} GROUP BY tenant"
        return {tenant: float(spent or 0.0) for tenant, spent in self.query(sql, (since_ts,))}

    def usage_by_tenant(self, now_s: float) -> dict[str, tuple[int, int, float]]:
        """tenant -> (requests today, requests this month, USD spent today), UTC calendar."""
        from datetime import datetime, timezone

        moment = datetime.fromtimestamp(now_s, timezone.utc)
        month_s = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc).timestamp()
        day_s = now_s - now_s % 86400
        rows = self.query(
            "SELECT tenant, SUM(CASE WHEN ts >= {p} THEN 1 ELSE 0 END), COUNT(*), "
            "SUM(CASE WHEN ts >= {p} THEN cost_usd ELSE 0 END) FROM requests WHERE ts >= {p} "
            "GROUP BY tenant",
            (day_s, day_s, month_s),
        )
        return {t: (int(d or 0), int(m or 0), float(c or 0.0)) for t, d, m, c in rows}

    def count(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM requests")[0][0])

    def ids(self, status_min: int = 200, status_max: int = 299) -> set[str]:
        sql = "SELECT id FROM requests WHERE status >= {p} AND status <= {p}"
        return {rid for (rid,) in self.query(sql, (status_min, status_max))}


def _wake(futures: list[asyncio.Future]) -> None:
    """Resolve each loop's futures with one call into that loop (not one per row)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for future in futures:
        by_loop.setdefault(future.get_loop(), []).append(future)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, group)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _resolve(futures: list[asyncio.Future]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
