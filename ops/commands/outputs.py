"""Output files of the ops commands (--json, --plot, --out, --csv): checked before the work
starts, so a typo in a path does not throw away a long simulation or replay, and written with
a one-line error rather than a traceback."""

from __future__ import annotations

import os
from pathlib import Path


def check_writable(path: str | None, flag: str) -> None:
    """CliError unless ``path`` (if given) can be created or overwritten."""
    if not path:
        return
    from ops.cli import CliError

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise CliError(f"{flag} {path}: is a directory")
    if not parent.is_dir():
        raise CliError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CliError(f"{flag} {path}: not writable")


def write_text(path: str | Path, text: str, flag: str) -> None:
    from ops.cli import CliError

    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise CliError(f"{flag} {path}: {exc.strerror or exc}") from None
