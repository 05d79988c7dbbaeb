"""``[ledger]`` settings: where the rows go (imported by gateway.settings; imports nothing of ours)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from policies.config_table import ConfigTable

_PG_SCHEMES = ("postgresql://", "postgres://")
MIN_RETAIN_DAYS = 32  # the month of quotas rebuilt at start (Ledger.usage_by_tenant), and a day


class LedgerSettings(ConfigTable):
    kind: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="sqlite: one file, the embedded default; postgresql: one ledger "
        "shared by several gateway replicas. Inferred from `url` when not given.",
    )
    url: str | None = Field(
        None,
        description="sqlite: the file (default DATA_DIR/ledger.sqlite); postgresql: a "
        "libpq URL, postgresql://user:password@host:port/dbname.",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "normal",
        description="sqlite: normal (default) commits each batch to the WAL before the "
        "answer, so a crash or SIGKILL of the gateway loses no row, at no fsync per request; "
        "full also fsyncs each commit, surviving power loss at one fsync per batch "
        "(adds 1-30 ms at one client on this class of disk).",
    )
    max_batch_rows: int = Field(4096, ge=1, description="Most rows committed in one transaction.")
    journal: bool = Field(
        True,
        description="sqlite with synchronous = normal: each row is appended to a journal "
        "file beside the database before its answer (copied into the file mapped in memory, "
        "as durable against a crash or SIGKILL as the WAL commit it replaces) and folded into the database every "
        "journal_fold_ms; false commits each loop iteration's rows to SQLite before the "
        "answers. Another process reading the database sees a row up to journal_fold_ms late.",
    )
    journal_fold_ms: float = Field(
        50.0,
        gt=0.0,
        le=10_000.0,
        description="How often journal rows are folded into the SQLite database.",
    )
    commit_interval_ms: float = Field(
        0.0,
        ge=0.0,
        le=10_000.0,
        description="0 (default): an answer goes out once its row is committed. Above 0: "
        "answers do not wait; the rows of each interval are committed together, off the "
        "request path (less CPU per request). A clean shutdown writes every row first; a "
        "SIGKILL, crash or power loss loses at most the rows of the last interval.",
    )

    shutdown_timeout_s: float = Field(
        10.0,
        ge=0.0,
        le=600.0,
        description="At a stop, how long the ledger keeps trying to write the rows still "
        "queued; rows the database has not taken by then (an outage) are kept in a spill file "
        "in the data directory and written at the next start. From the stop on, a row the "
        "database refuses goes to that file at once, so its request is answered rather than "
        "held until the HTTP drain gives up.",
    )
    spill_scan_s: float = Field(
        5.0,
        ge=0.0,
        le=3600.0,
        description="How often a running gateway looks in its data directory for spill files "
        "another gateway left (a replica stopped in an outage) and writes their rows into the "
        "database, while the database takes rows: a shorter interval gets those rows into a "
        "shared ledger's reports sooner, at one directory listing per look. 0: only at start.",
    )

    retain_days: float = Field(
        400.0,
        ge=0.0,
        description="Rows older than this many days are deleted, by a background thread in "
        "small batches (0 = keep every row forever). 400 (default): a year-over-year report "
        "(this month against the same month last year) and a billing dispute over last "
        "year's invoice still find every row, while the ledger stops growing (~1.5 GB a day "
        "at 100 requests/s on SQLite: ~600 GB at 400 days; set fewer days if that is too "
        "much, but no fewer than 32: monthly quotas are rebuilt from this month's rows at "
        "start). A report reaching before the pruned rows says so.",
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_from_url(cls, data):
        if (
            isinstance(data, dict)
            and "kind" not in data
            and str(data.get("url") or "").startswith(_PG_SCHEMES)
        ):
            data = {**data, "kind": "postgresql"}
        return data

    @model_validator(mode="after")
    def _url_matches_kind(self) -> "LedgerSettings":
        if 0 < self.retain_days < MIN_RETAIN_DAYS:
            raise ValueError(
                f"ledger.retain_days = {self.retain_days:g} would delete rows of this month "
                f"that monthly quotas count: 0 (keep all) or at least {MIN_RETAIN_DAYS}"
            )
        is_pg_url = (self.url or "").startswith(_PG_SCHEMES)
        if self.kind == "postgresql" and not is_pg_url:
            raise ValueError("ledger.kind = postgresql needs url = 'postgresql://user@host/db'")
        if self.kind == "sqlite" and is_pg_url:
            raise ValueError("ledger.url is a PostgreSQL URL but ledger.kind is sqlite")
        if is_pg_url:
            _check_pg_url(str(self.url))
        return self

    def target(self, data_dir: Path) -> str:
        """What ``Ledger`` opens: the PostgreSQL URL or the SQLite file path."""
        if self.kind == "postgresql":
            return str(self.url)
        return str(Path(self.url) if self.url else Path(data_dir) / "ledger.sqlite")


def _check_pg_url(url: str) -> None:
    """A URL libpq cannot read is refused here, in words that do not repeat it: psycopg's own
    message quotes it whole, password and all (serve printed it on its way out)."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # no PostgreSQL client installed: connecting will say so
        return
    try:
        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError, whatever libpq says
        reason = str(exc).split(' in URI: "')[0].replace(url, "<url>").strip()
        raise ValueError(
            "ledger.url is not a PostgreSQL URL libpq reads "
            f"(postgresql://user:password@host:port/dbname, special characters %-encoded): {reason}"
        ) from None
