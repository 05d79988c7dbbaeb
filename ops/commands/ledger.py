"""``tidegate ledger prune``: delete the ledger's rows before a date, by hand.

The gateway prunes rows older than ``[ledger] retain_days`` itself (``gateway.ledger.retention``);
this is for an operator who wants space back sooner, or keeps rows forever (``retain_days = 0``)
and prunes on a schedule of their own. Same batches as the gateway's: safe beside a running one.
"""

from __future__ import annotations

import time

from ops.cli import HelpFormatter

# By hand an operator waits for it: batches a quarter of the time (the gateway's own: 2 %)
CLI_DUTY = 0.25
HELP = (
    "Ledger upkeep. 'tidegate ledger prune --before DATE' deletes the rows older than DATE "
    "(in short batches, safe while a gateway runs) and prints how many went; reports over "
    "that time then say rows before it were pruned."
)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    prune = sub.add_parser(
        "prune",
        help="delete rows before a date",
        description="Delete the ledger's rows older than --before, oldest first, in short "
        "transactions (a running gateway keeps answering), and print how many went.",
        epilog="examples:\n"
        "  tidegate ledger prune --before 2025-01-01 --dry-run     # count, delete nothing\n"
        "  tidegate ledger prune --before 2025-01-01 --ledger postgresql://tidegate@db/ledger",
        formatter_class=HelpFormatter,
    )
    prune.add_argument(
        "--before",
        required=True,
        help="delete rows before this time: ISO 8601 (UTC unless it says otherwise, e.g. "
        "2025-01-01) or epoch seconds; not in the future",
    )
    prune.add_argument(
        "--data-dir",
        default=".tidegate",
        help="the gateway's data_dir (its ledger.sqlite); default .tidegate",
    )
    prune.add_argument(
        "--ledger",
        help="ledger URL instead (postgresql://... or a file; default: DATA_DIR's)",
    )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="only count the rows that would be deleted (default: delete them)",
    )


def run(args) -> int:
    from ops.cli import CliError

    if getattr(args, "action", None) != "prune":
        raise CliError("say what to do: tidegate ledger prune --before DATE (see --help)")
    before_ts = _before(args.before)
    backend = _open(args.data_dir, args.ledger)
    try:
        where = f"{backend.describe()} before {_iso(before_ts)}"
        if args.dry_run:
            count = backend.query(
                f"SELECT COUNT(*) FROM requests WHERE ts < {backend.placeholder}", (before_ts,)
            )[0][0]
            print(f"would prune {int(count)} rows from {where} (dry run: none deleted)")
            return 0
        from gateway.ledger.retention import prune_before

        deleted = prune_before(backend, before_ts, duty=CLI_DUTY)
    except Exception as exc:  # sqlite3 / psycopg errors alike: one line
        raise CliError(f"{type(exc).__name__}: {exc}") from None
    finally:
        backend.close()
    print(f"pruned {deleted} rows from {where}")
    return 0


def _before(text: str) -> float:
    from gateway.errors import TidegateError
    from gateway.reports import parse_time
    from ops.cli import CliError

    try:
        before_ts = parse_time(text)
    except TidegateError as exc:
        raise CliError(f"--before: {exc.message}") from None
    if before_ts is None:
        raise CliError("--before needs a date or time")
    if before_ts > time.time():
        raise CliError(f"--before {text} is in the future: that would delete rows still young")
    return before_ts


def _open(data_dir: str, url: str | None):
    """The ledger's backend, migrated (the pruned-rows record is a table of the latest)."""
    from pathlib import Path

    from gateway.ledger import make_backend
    from ops.cli import CliError

    if url is None:
        path = Path(data_dir or ".tidegate") / "ledger.sqlite"
        if not path.is_file():
            raise CliError(f"no ledger at {path} (is --data-dir the gateway's data_dir?)")
        url = str(path)
    elif not url.startswith(("postgresql://", "postgres://")) and not Path(url).is_file():
        raise CliError(f"no ledger at {url}")  # (opening it would create an empty database)
    from gateway.ledger.migrations import SchemaTooNew

    try:
        backend = make_backend(url)
        backend.query("SELECT ts FROM requests LIMIT 1", ())
        backend.migrate()
    except SchemaTooNew as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - not a ledger, or unreachable: one line
        from ops.report import without_password  # (psycopg quotes a URL it cannot read whole)

        shown, password = without_password(url)
        text = " ".join(str(exc).split()).replace(password or "\0", "***")
        raise CliError(f"{shown}: not a readable Tidegate ledger ({text})") from None
    return backend


def _iso(ts: float) -> str:
    from gateway.ledger.retention import iso

    return iso(ts)
