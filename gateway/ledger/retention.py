"""Ledger retention: rows older than ``[ledger] retain_days`` are deleted in the background.

At 100 requests/s an SQLite ledger grows ~1.5 GB a day; nothing bounded it. A thread of the
ledger's (never the event loop) deletes the oldest rows past the horizon in small batches, each
its own short transaction: SQLite has one writer at a time, and a batch holds the lock only a
few milliseconds, with a pause after it, so the journal's fold and the commits of answers get in
between (``LedgerPruner``). Deleted pages are reused by new rows: the file stops growing rather
than shrinking (``VACUUM`` it offline to give the space back).

How far back rows are gone is recorded with them (table ``ledger_retention``, in the same
transaction as the delete): a report whose window starts before that says so (``coverage_note``),
rather than showing low figures as if they were whole. ``tidegate ledger prune --before DATE``
(``ops/commands/ledger.py``) runs the same batches by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

log = logging.getLogger("tidegate.ledger")
DAY_S = 86400.0
# The horizon only moves forward: a later, shorter-reaching prune never claims rows came back.
HORIZON = (
    "INSERT INTO ledger_retention (id, pruned_before_ts) VALUES (1, ?) ON CONFLICT (id) DO "
    "UPDATE SET pruned_before_ts = GREATEST(ledger_retention.pruned_before_ts, "
    "excluded.pruned_before_ts)"
)
# A batch's rows adapt so it holds the write lock about this long, and batches hold it at most
# DUTY of the time. With the journal (the default) an answer never waits for SQLite; committing
# each answer's row instead, an answer that meets a batch waits for it: at a 4 ms batch every
# 24 ms, record p99 went 0.27 -> 3.8 ms (800k rows, docs/operations.md). At 2 % that is under
# the 99th percentile, and still ~2,000 rows/s: 100 requests/s write 100.
TARGET_BATCH_S = 0.005
DUTY = 0.02
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 50, 5000


def prune_before(
    backend,
    before_ts: float,
    *,
    batch_rows: int = 1000,
    duty: float = DUTY,
    pause_s: float = 0.0,
    stop: threading.Event | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Delete every row of ``backend`` older than ``before_ts``, oldest first, in batches that
    each hold the write lock about ``TARGET_BATCH_S``; after each it waits so that batches take
    at most ``duty`` of the time (and at least ``pause_s``): other writers go then. Returns the
    rows deleted; stops early once ``stop`` is set."""
    total, rows = 0, max(MIN_BATCH_ROWS, min(batch_rows, MAX_BATCH_ROWS))
    stop = stop or threading.Event()
    while not stop.is_set():
        start = monotonic()
        deleted = backend.prune(before_ts, rows)
        took = monotonic() - start
        total += deleted
        if deleted < rows:
            return total
        if took > TARGET_BATCH_S:
            rows = max(MIN_BATCH_ROWS, rows // 2)
        elif took < TARGET_BATCH_S / 4:
            rows = min(MAX_BATCH_ROWS, rows * 2)
        stop.wait(max(pause_s, took * (1.0 / duty - 1.0)))
    return total


class LedgerPruner:
    """Deletes the ledger's rows older than ``retain_days`` (by ``clock``, epoch seconds):
    once at start, then every ``interval_s``, on a thread of its own. A failure (a locked or
    unreachable database) is logged and the next pass tries again: rows are never lost by it,
    only kept longer."""

    def __init__(
        self,
        backend,
        retain_days: float,
        *,
        interval_s: float = 3600.0,
        batch_rows: int = 1000,
        duty: float = DUTY,
        clock: Callable[[], float] = time.time,
    ):
        if retain_days <= 0:
            raise ValueError("retain_days must be > 0 (0 keeps every row: no pruner)")
        self.backend = backend
        self.retain_days = retain_days
        self.interval_s = interval_s
        self.batch_rows = batch_rows
        self.duty = duty
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._passed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.passes = 0  # passes finished (failed ones too)
        self.rows_pruned = 0
        self.last_error: str | None = None

    def horizon(self) -> float:
        """Rows older than this go (epoch seconds)."""
        return self.clock() - self.retain_days * DAY_S

    def prune_once(self) -> int:
        """One pass: every row past the horizon; the rows deleted (raises what the database
        raised: ``run`` logs it)."""
        horizon = self.horizon()
        try:
            deleted = prune_before(
                self.backend,
                horizon,
                batch_rows=self.batch_rows,
                duty=self.duty,
                stop=self._stop,
            )
        finally:
            getattr(self.backend, "end_prune", lambda: None)()  # (PostgreSQL: its connection)
        self.rows_pruned += deleted
        if deleted:
            log.info(
                "ledger retention: %d rows before %s pruned (retain_days = %g)",
                deleted,
                iso(horizon),
                self.retain_days,
            )
        return deleted

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-prune", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now (tests, after moving their clock)."""
        self._wake.set()

    def wait_passes(self, count: int, timeout_s: float = 30.0) -> bool:
        """Until ``count`` passes have finished; False on timeout."""
        with self._passed:
            return self._passed.wait_for(lambda: self.passes >= count, timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - locked, unreachable: the next pass retries
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("ledger retention: pass failed, retried later: %s", self.last_error)
            with self._passed:
                self.passes += 1
                self._passed.notify_all()
            self._wake.wait(self.interval_s)
            self._wake.clear()


def pruned_before(query) -> float | None:
    """How far back rows were pruned (epoch seconds), or None if none ever were. ``query`` is
    ``Ledger.query`` ({p} placeholders); a ledger from before retention existed has no record."""
    try:
        found = query("SELECT pruned_before_ts FROM ledger_retention WHERE id = 1")
    except Exception:  # noqa: BLE001 - no such table (an older ledger read in place): none pruned
        return None
    return float(found[0][0]) if found else None


def coverage_note(horizon: float | None, since_ts: float | None) -> str | None:
    """What a report says when its window starts before rows were pruned (else None)."""
    if horizon is None or (since_ts is not None and since_ts >= horizon):
        return None
    return (
        f"rows before {iso(horizon)} were pruned from the ledger ([ledger] retain_days): "
        "figures before then are incomplete"
    )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
