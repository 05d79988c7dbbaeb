"""Which trace format a file is, told by its first line, and a header's columns by name."""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
from pathlib import Path

from ops.traces import FORMATS, TraceError

_COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open))


def open_text(path: Path, **kwargs):
    """The file as text, decompressed when it is gzip, xz or bzip2 (as the public traces are
    shipped: ``.csv.gz``), whatever its name says; a damaged archive is a ``TraceError``."""
    with open(path, "rb") as f:
        magic = f.read(6)
    kwargs.setdefault("encoding", "utf-8-sig")
    for prefix, opener in _COMPRESSED:
        if magic.startswith(prefix):
            return opener(path, "rt", **kwargs)
    return open(path, "r", **kwargs)


def detect_format(path: Path) -> str:
    with open_text(path, errors="replace") as f:
        first = f.readline().strip()
    # the header's cells as the readers see them: a spreadsheet's export quotes every cell
    cells = [c.strip() for c in next(csv.reader([first]), [])] or [""]
    low = ",".join(cells).lower().replace(" ", "")
    if first.startswith("{"):
        return "mooncake"
    if low.startswith("hashowner,hashapp,hashfunction"):
        return "azure2019"
    if low.startswith("app,func,end_timestamp"):
        return "azure2021"
    if low.startswith("timestamp,contexttokens"):
        return "azure-llm"
    if low.startswith("timestamp_s"):
        return "csv"
    named = header_format(cells)  # the same columns in another order, or with more of them
    if named:
        return named
    if len(cells) == 1:
        return "gaps"
    if len(cells) >= 2 and all(is_number(c) for c in cells):  # "second,count" too: a
        return "per-second"  # model is not named by a number (before: 2 columns read as csv)
    if len(cells) in (2, 3) and is_number(cells[0]):
        return "csv"
    raise TraceError(
        f"{path}: cannot tell the trace format from its first line {first[:80]!r}; "
        f"pass the format explicitly (one of {', '.join(FORMATS)})"
    )


HEADERS = {  # the columns a format's header must name, in any order, beside others
    "azure2021": ("app", "func", "end_timestamp", "duration"),
    "azure-llm": ("timestamp", "contexttokens"),
    "csv": ("timestamp_s", "model"),
}


def header_format(cells: list[str]) -> str | None:
    names = {c.lower().replace(" ", "") for c in cells}
    for fmt, needed in HEADERS.items():
        if names.issuperset(needed):
            return fmt
    return None


def columns(path: Path, row: list[str], needed: tuple[str, ...], optional=()) -> dict:
    """Header ``row``'s index of each column in ``needed`` and ``optional`` (names compared
    without case): a file may order them its own way and carry other columns, as CSV allows."""
    index = {c.lower(): i for i, c in reversed(list(enumerate(row)))}
    missing = [n for n in needed if n.lower() not in index]
    if missing:
        raise TraceError(
            f"{path}:1: expected header {','.join(needed)} (in any order); "
            f"no column {', '.join(missing)}"
        )
    return {n: index[n.lower()] for n in (*needed, *optional) if n.lower() in index}


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def rows(path: Path):
    """(line number, cells without surrounding blanks); a blank line is an empty row."""
    with open_text(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            yield lineno, cells if any(cells) else []
