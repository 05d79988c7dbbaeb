"""``tidegate report``: the ledger opened for a report; rendering is ``gateway.report_render``.

The numbers come from ``gateway.reports`` (the same code behind ``GET /admin/reports/...``), so
the CLI and the endpoint never disagree. See there for how idle VM time is attributed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.report_render import (  # noqa: F401 - the CLI's and tests' names
    FIELDS,
    PARTS,
    RENDERERS,
    render_csv,
    render_html,
    render_json,
    render_table,
)


class LedgerMissing(ValueError):
    pass


def open_ledger(data_dir: str | Path | None, url: str | None = None):
    """A ``query(sql, params)`` over the ledger at ``url`` or ``DATA_DIR/ledger.sqlite``."""
    from urllib.parse import unquote

    from gateway.ledger import make_backend

    if url is None:
        path = Path(data_dir or ".tidegate") / "ledger.sqlite"
        if not path.is_file():
            raise LedgerMissing(f"no ledger at {path} (is --data-dir the gateway's data_dir?)")
        url = str(path)
    elif not url.startswith(("postgresql://", "postgres://")) and not Path(url).is_file():
        # (an SQLite path that is not a file: opening it would create an empty database)
        raise LedgerMissing(f"no ledger at {url}")
    try:
        backend = make_backend(url)
        backend.query("SELECT tenant, ts, cost_usd FROM requests LIMIT 1", ())
    except Exception as exc:  # sqlite3 / psycopg errors alike: not a ledger we can read
        # never the URL's password (it was printed whole: postgresql://user:pass@host/db)
        shown, password = without_password(url)
        text = " ".join(str(exc).split())
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
        raise LedgerMissing(f"{shown}: not a readable Tidegate ledger ({text})") from None
    if not _newer_schema(backend):  # (folding is a write: not into a newer release's ledger)
        _fold_journal(backend, url)
        _fold_spill(backend, url, data_dir)

    def query(sql: str, params: tuple = ()) -> list[tuple]:
        return backend.query(sql.format(p=backend.placeholder), params)

    return query


def _newer_schema(backend) -> bool:
    """Warn (stderr) when a newer Tidegate migrated this ledger: the report reads the columns
    this one knows, which may not be all the newer one bills by."""
    from gateway.ledger.migrations import LATEST_VERSION

    try:
        version = backend.query("SELECT MAX(version) FROM schema_migrations", ())[0][0]
    except Exception:  # noqa: BLE001 - a ledger from before migrations: older, not newer
        return False
    if version is None or version <= LATEST_VERSION:
        return False
    print(
        f"warning: this ledger has schema version {version}, newer than this Tidegate's "
        f"({LATEST_VERSION}); the report reads only what this release knows and writes "
        "nothing (a newer release's report may differ)",
        file=sys.stderr,
    )
    return True


def _fold_journal(backend, url: str) -> None:
    """Rows a crashed gateway left in its journal (gateway.ledger.journal) go into the report:
    folded here unless a live gateway owns the journal (it folds them within its interval)."""
    if not hasattr(backend, "write_journal"):
        return
    from gateway.ledger.journal import fold_left_behind

    try:
        folded = fold_left_behind(backend, Path(url))
    except Exception as exc:  # noqa: BLE001 - the report still reads what the database holds
        print(f"warning: rows left in {url}'s journal were not read: {exc}", file=sys.stderr)
        return
    if folded:
        print(
            f"note: {folded} rows a stopped gateway left in its journal were folded in",
            file=sys.stderr,
        )


def _fold_spill(backend, url: str, data_dir: str | Path | None) -> None:
    """Rows a gateway stopping in a database outage spilled (gateway.ledger.spill) go into the
    report, as a gateway's next start would write them: before, a report between that stop and
    the next start was short of them (answered requests, billed nowhere yet)."""
    from gateway.ledger.spill import pending, replay

    places = {Path(data_dir or ".tidegate")}
    if not url.startswith(("postgresql://", "postgres://")):
        places.add(Path(url).parent)  # (an SQLite ledger's own directory: Ledger's default)
    ledger = backend.describe()
    for place in sorted(places):
        if not pending(place, ledger):
            continue
        try:
            written = replay(backend, place, ledger)
        except Exception as exc:  # noqa: BLE001 - the report still reads what the database holds
            print(f"warning: rows spilled to {place} were not read: {exc}", file=sys.stderr)
            continue
        left = len(pending(place, ledger))  # (still being written by a stopping gateway)
        if written:
            print(
                f"note: {written} rows a stopped gateway spilled to {place} were written into "
                "the ledger",
                file=sys.stderr,
            )
        if left:
            print(
                f"warning: {left} spill files in {place} are still being written by a "
                "stopping gateway: their rows are not in this report",
                file=sys.stderr,
            )


def without_password(url: str) -> tuple[str, str | None]:
    """(the URL with its password as ***, the password as written), whether or not the rest
    of it parses (psycopg quotes an unparsable URL whole in its error)."""
    import re

    found = re.match(r"^([a-z]+://[^:/@]*:)(.*)@", url)
    if found is None or not found[2]:
        return url, None
    return found[1] + "***@" + url[found.end() :], found[2]
