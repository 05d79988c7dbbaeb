"""The shared ledger backend: PostgreSQL, for several gateway replicas writing one ledger."""

from __future__ import annotations

import time

from .migrations import MIGRATIONS, refuse_newer
from .retention import HORIZON
from .row import STORED_COLUMNS, keyed

# the oldest rows first, through the ts index (seq: the table's key)
_PRUNE = (
    "DELETE FROM requests WHERE seq IN "
    "(SELECT seq FROM requests WHERE ts < %s ORDER BY ts LIMIT %s)"
)
_COLUMN_LIST = ", ".join(STORED_COLUMNS)
# COPY cannot skip a row already there: a batch goes into a table of this connection's own
# (emptied at each commit), then into requests but for the keys it holds already. A commit whose
# acknowledgement was lost (the connection dropped after COMMIT) is retried without a row twice.
_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS ledger_incoming ON COMMIT DELETE ROWS AS "
    f"SELECT {_COLUMN_LIST} FROM requests WITH NO DATA"
)
_MOVE = (
    f"INSERT INTO requests ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM ledger_incoming "
    "ON CONFLICT (row_key) DO NOTHING"
)
# Any constant: serialises migrators of every replica that starts at the same moment.
_MIGRATION_LOCK_ID = 7_402_611


class PostgresBackend:
    """psycopg 3, synchronous (it runs on the ledger's writer thread). Batches go in with COPY,
    one transaction each: a commit is durable (``synchronous_commit`` as the server has it)."""

    placeholder = "%s"

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0):
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._writer = None
        self._pruner = None  # the retention thread's (prune)

    def describe(self) -> str:
        # never the password: the URL may carry one
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.url)
        return (
            f"postgresql://{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"
        )

    def _connect(self):
        import psycopg

        return psycopg.connect(self.url, connect_timeout=int(self.connect_timeout_s))

    def migrate(self) -> int:
        with self._connect() as db:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                    "PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                )
                applied = {v for (v,) in db.execute("SELECT version FROM schema_migrations")}
                refuse_newer(max(applied, default=None), self.describe())
                for migration in MIGRATIONS:
                    if migration.version in applied:
                        continue
                    for statement in migration.postgres:
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                        (migration.version, migration.name, time.time()),
                    )
            return db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    def write(self, rows: list[tuple]) -> None:
        try:
            if self._writer is None or self._writer.closed:
                self._writer = self._connect()
                with self._writer.transaction():
                    self._writer.execute(_INCOMING)
            db = self._writer
            with db.transaction():
                with db.cursor().copy(f"COPY ledger_incoming ({_COLUMN_LIST}) FROM STDIN") as copy:
                    for row in keyed(rows):
                        copy.write_row(row)
                db.execute(_MOVE)
        except BaseException:
            self._reset()
            raise

    def prune(self, before_ts: float, limit: int) -> int:
        """``SqliteBackend.prune``: up to ``limit`` of the oldest rows before ``before_ts``, and
        the horizon, in one transaction (the retention thread's own connection)."""
        if self._pruner is None or self._pruner.closed:
            self._pruner = self._connect()
        db = self._pruner
        try:
            with db.transaction():
                deleted = db.execute(_PRUNE, (before_ts, limit)).rowcount
                if deleted:
                    db.execute(HORIZON.replace("?", "%s"), (before_ts,))
            return max(deleted, 0)
        except BaseException:
            db.close()
            self._pruner = None
            raise

    def end_prune(self) -> None:
        """After a pass: its connection goes (an hour idle, a server or proxy may drop it)."""
        if self._pruner is not None:
            self._pruner.close()
            self._pruner = None

    def _reset(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close, too
                pass
            self._writer = None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._connect() as db:
            return db.execute(sql, params).fetchall()

    def close(self) -> None:
        self._reset()
        self.end_prune()
