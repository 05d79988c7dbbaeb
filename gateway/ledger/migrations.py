"""Versioned schema migrations, one list per backend, applied in order and recorded.

Version 1 is the schema of the first release (``IF NOT EXISTS``), so a ledger written before
migrations existed is adopted as version 1 and then upgraded. Never edit a released migration:
add the next version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_V1_COLUMNS = """
    id TEXT, ts {real} NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, path TEXT NOT NULL,
    status INTEGER NOT NULL, latency_ms {real} NOT NULL, batch_size INTEGER NOT NULL,
    workers INTEGER NOT NULL, cold_starts INTEGER NOT NULL, vm_cost_usd {real} NOT NULL,
    function_cost_usd {real} NOT NULL, store_cost_usd {real} NOT NULL, cost_usd {real} NOT NULL,
    billed_ms INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT ''"""

_JOURNAL_TABLE = (
    "CREATE TABLE IF NOT EXISTS ledger_journal (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "folded_segment INTEGER NOT NULL)"
)

_RETENTION_TABLE = (
    "CREATE TABLE IF NOT EXISTS ledger_retention (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "pruned_before_ts {real} NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "requests table",
        sqlite=(
            f"CREATE TABLE IF NOT EXISTS requests ({_V1_COLUMNS.format(real='REAL')})",
            "CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests (tenant, ts)",
        ),
        postgres=(
            "CREATE TABLE IF NOT EXISTS requests (seq BIGSERIAL PRIMARY KEY, "
            f"{_V1_COLUMNS.format(real='DOUBLE PRECISION')})",
            "CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests (tenant, ts)",
        ),
    ),
    Migration(
        2,
        "routing reason per row; time index for reports",
        sqlite=(
            "ALTER TABLE requests ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        ),
        postgres=(
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS reason TEXT NOT NULL DEFAULT ''",
            "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        ),
    ),
    Migration(
        3,
        "the last journal segment folded into the table (gateway.ledger.journal)",
        sqlite=(_JOURNAL_TABLE,),
        postgres=(_JOURNAL_TABLE,),
    ),
    Migration(
        4,
        "how far back rows were pruned (gateway.ledger.retention)",
        sqlite=(_RETENTION_TABLE.format(real="REAL"),),
        postgres=(_RETENTION_TABLE.format(real="DOUBLE PRECISION"),),
    ),
    Migration(
        5,
        "a unique key per row: a batch written again adds no row twice (gateway.ledger.row)",
        # rows written before have NULL, which a unique index never compares equal
        sqlite=(
            "ALTER TABLE requests ADD COLUMN row_key TEXT",
            "CREATE UNIQUE INDEX IF NOT EXISTS requests_row_key ON requests (row_key)",
        ),
        postgres=(
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS row_key TEXT",
            "CREATE UNIQUE INDEX IF NOT EXISTS requests_row_key ON requests (row_key)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The ledger was migrated by a newer Tidegate: this one refuses to write to it (its rows
    could break what the newer schema holds, e.g. a column it requires), and reads it only
    for a report, with a warning (``ops.report``)."""


def refuse_newer(version: int | None, where: str) -> None:
    """Raise ``SchemaTooNew`` when ``version`` (the ledger's) is past ``LATEST_VERSION``."""
    if version is not None and version > LATEST_VERSION:
        raise SchemaTooNew(
            f"ledger {where} has schema version {version}, newer than this Tidegate's "
            f"({LATEST_VERSION}): a newer release migrated it, so this one writes nothing to it. "
            "Run that release (or a later one), or point [ledger] at another database"
        )
