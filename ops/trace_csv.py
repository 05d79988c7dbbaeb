"""The plain trace CSV, ``timestamp_s,model[,tenant]``: what ``write_csv`` writes and every
command reads. 10 M lines read line by line took ~6 min (75 s for 2 M at load 7: a Python loop
over csv cells, then ``np.unique`` over 2 M strings); read in bulk (one split of the text, codes
by dictionary) the same file takes seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ops.trace_header import HEADERS, columns, header_format, is_number, open_text, rows
from ops.traces import Trace, TraceError, TraceMapping, _build, build_coded

MAX_BULK_BYTES = 4 << 30  # past this the text itself would not fit: read line by line


def _bulk(path: Path, mapping: TraceMapping) -> Trace | None:
    """The trace read in one pass over the whole text, or None where the line-by-line reader
    must decide (quotes, blanks around cells, blank or ragged lines, a cell that is no number)."""
    if path.stat().st_size > MAX_BULK_BYTES:
        return None
    with open_text(path, newline="") as f:
        text = f.read()
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    text = text.rstrip("\n")
    if not text or any(c in text for c in '"\r \t') or "\n\n" in text:
        return None
    first = text[: text.find("\n") if "\n" in text else len(text)]
    head = first.split(",")
    at, model_at, tenant_at, begin = 0, 1, 2, 0
    if not is_number(head[0]):
        if header_format(head) != "csv":
            return None
        col = columns(path, head, HEADERS["csv"], ("tenant",))
        at, model_at, tenant_at = col["timestamp_s"], col["model"], col.get("tenant", -1)
        begin = len(first) + 1
    line_end = text.find("\n", begin)
    width = len(text[begin : line_end if line_end >= 0 else len(text)].split(","))
    if begin >= len(text) or (is_number(head[0]) and width not in (2, 3)):
        return None
    if width <= max(at, model_at):
        return None
    parts = _chunks(text, begin, width, (at, model_at, tenant_at), mapping)
    if parts is None:
        return None
    t, models, tenants = parts
    return build_coded(path.name, t, models, tenants, rebase=False)


CHUNK_CHARS = 8 << 20  # text split into cells at a time: 10 M lines whole held 30 M str (3.2 GB)


def _chunks(text: str, begin: int, width: int, at: tuple[int, int, int], mapping: TraceMapping):
    """(times, (models, codes), (tenants, codes)) of the lines from ``begin``, split a few MB
    at a time; None where a chunk is ragged or a time is no number (the line reader says)."""
    times_at, model_at, tenant_at = at
    times: list[np.ndarray] = []
    models = _Codes(mapping.default_model)
    tenants = _Codes(mapping.default_tenant)
    while begin < len(text):
        end = text.find("\n", begin + CHUNK_CHARS)
        end = len(text) if end < 0 else end
        chunk = text[begin:end]
        begin = end + 1
        lines = chunk.count("\n") + 1
        cells = chunk.replace("\n", ",").split(",")
        if len(cells) != lines * width or not _even(chunk, width, lines):
            return None  # (a ragged file: the line-by-line reader names the line)
        try:
            times.append(np.array(cells[times_at::width], dtype=np.float64))
        except ValueError:
            return None
        models.add(cells[model_at::width])
        tenants.add(cells[tenant_at::width] if 0 <= tenant_at < width else [""] * lines)
    return np.concatenate(times), models.coded(), tenants.coded()


class _Codes:
    """Names coded as ints chunk by chunk; ``coded`` gives them in sorted order, as before."""

    def __init__(self, default: str):
        self.default = default
        self.index: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, names: list[str]) -> None:
        index = self.index
        for name in set(names) - index.keys():
            index[name] = len(index)
        self.parts.append(np.fromiter((index[n] for n in names), np.int32, len(names)))

    def coded(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(sorted distinct names, each cell's index into them); an empty cell is the default."""
        distinct = sorted({n or self.default for n in self.index})
        where = {n: i for i, n in enumerate(distinct)}
        remap = np.zeros(max(len(self.index), 1), np.int32)
        for name, code in self.index.items():
            remap[code] = where[name or self.default]
        return tuple(distinct), remap[np.concatenate(self.parts)]


def _even(body: str, width: int, lines: int) -> bool:
    """Every line has ``width`` cells (the total alone could hide one short and one long)."""
    data = np.frombuffer(body.encode(), dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    commas = np.flatnonzero(data == 44)
    per_line = np.diff(np.searchsorted(commas, np.append(ends, data.size)), prepend=0)
    return per_line.size == lines and bool((per_line == width - 1).all())


def _coded(names: list[str], default: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(sorted distinct names, each cell's index into them); an empty cell is ``default``."""
    distinct = sorted({n or default for n in set(names)})
    index = {n: i for i, n in enumerate(distinct)}
    if "" in set(names):
        index[""] = index[default]
    return tuple(distinct), np.fromiter((index[n] for n in names), np.int32, len(names))


def read_csv(path: Path, mapping: TraceMapping, rng) -> Trace:
    """``timestamp_s,model[,tenant]`` (a header names its columns, in any order beside others;
    without one, by position). A plain file is read in bulk (``_bulk``); one with quotes, blanks
    or ragged lines, or one the bulk read finds a bad cell in, line by line (its errors name the
    line)."""
    trace = _bulk(path, mapping)
    return _without_long_lead(trace if trace is not None else _by_line(path, mapping))


def _by_line(path: Path, mapping: TraceMapping) -> Trace:
    times, models, tenants = [], [], []
    at, model_at, tenant_at, named = 0, 1, 2, False  # without a header: by position
    for lineno, row in rows(path):
        if lineno == 1 and row and not is_number(row[0]) and header_format(row) == "csv":
            col = columns(path, row, HEADERS["csv"], ("tenant",))
            at, model_at, tenant_at = col["timestamp_s"], col["model"], col.get("tenant", -1)
            named = True  # (other columns: left out)
            continue
        if not row:
            continue
        if (len(row) not in (2, 3)) if not named else len(row) <= max(at, model_at):
            raise TraceError(f"{path}:{lineno}: expected timestamp_s,model[,tenant]")
        try:
            times.append(float(row[at]))
        except ValueError:
            raise TraceError(f"{path}:{lineno}: timestamp_s {row[at]!r} is not a number") from None
        models.append(row[model_at] or mapping.default_model)
        tenant = row[tenant_at] if 0 <= tenant_at < len(row) else ""
        tenants.append(tenant or mapping.default_tenant)
    if not times:
        raise TraceError(f"{path}: no requests")
    return _build(path.name, times, models, tenants, rebase=False)


MAX_LEAD_S = 86400.0  # a longer silence before the first request is an offset, not traffic


def _without_long_lead(trace: Trace) -> Trace:
    """The trace from its first request when that comes more than a day in (seconds from some
    other origin: 58 days of nothing took the simulator 25 minutes to bill); a note says so.
    A shorter lead is kept: the VMs it bills are the run's."""
    lead = float(trace.arrivals_s[0])
    if lead <= MAX_LEAD_S:
        return trace
    note = (
        f"{trace.name}: the first request is at {lead:,.0f} s (more than a day in): "
        "read from it, as if at 0 s"
    )
    return replace(trace, arrivals_s=trace.arrivals_s - lead, extra={"warnings": [note]})
