"""The trace file formats ``ops.traces.read_trace`` reads, one reader each (see there)."""

from __future__ import annotations

import csv
from array import array
import glob
import json
import re
import warnings
from pathlib import Path

import numpy as np

from ops.traces import (
    Trace,
    TraceError,
    TraceMapping,
    _build,
    MAX_REQUESTS,
    MAX_SPAN_S,
    _read_file,
    _uniform_trace,
    spread_counts,
)


from ops.trace_header import (
    HEADERS,
    columns,
    detect_format,
    open_text,
    rows,
)
from ops.trace_csv import read_csv

__all__ = ["READERS", "detect_format", "open_text", "read_days"]


def _minute_rows(path: Path):
    """Azure 2019 lines after the header: (line number, the first four cells, the counts'
    text); and the number of minutes first. A line without quotes is split by hand (a
    50,000-function day: the csv module's cells took 17 s of a 20 s read)."""
    with open_text(path, newline="") as f:
        header = [c.strip() for c in next(csv.reader([f.readline()]), [])]
        while header and not header[-1]:  # a trailing comma on every line (a spreadsheet's)
            header.pop()
        if len(header) < 5 or header[4] != "1":
            raise TraceError(
                f"{path}:1: expected header HashOwner,HashApp,HashFunction,Trigger,1..1440"
            )
        minutes = 0  # the columns 1, 2, ... N; others after them (a note, a total) are not read
        while 4 + minutes < len(header) and header[4 + minutes] == str(minutes + 1):
            minutes += 1
        yield minutes, len(header) - 4
        for lineno, line in enumerate(f, start=2):
            if not line.strip():  # a blank line (one left at the end of a file)
                continue
            if '"' in line:
                cells = [c.strip() for c in next(csv.reader([line]))]
                cells = [*cells[:4], ",".join(cells[4:])] if len(cells) > 4 else cells
            else:
                cells = line.split(",", 4)
            if len(cells) < 5:
                raise TraceError(f"{path}:{lineno}: expected HashOwner,HashApp,...,1..1440")
            if [c.strip() for c in cells[:2]] == header[:2]:  # (a function's owner is a hash)
                # (its minutes read as counts: ~1 M requests of a function named HashOwner)
                raise TraceError(
                    f"{path}:{lineno}: the header again (daily files joined with cat?): give "
                    "the days as a quoted glob ('...anon.d*.csv'), read one day after another"
                )
            yield lineno, [c.strip() for c in cells[:4]], cells[4].rstrip(", \t\r\n")


def _counts_2019(path: Path, lineno: int, text: str, minutes: int, columns: int) -> np.ndarray:
    """One line's per-minute counts, checked (the first ``minutes`` of ``columns``)."""
    if columns > minutes and len(cells := text.split(",", minutes)) > minutes:
        text = ",".join(cells[:minutes])  # a header with columns after the minutes': left out
    try:
        with warnings.catch_warnings():  # (numpy stops at a cell that is no integer: warns)
            warnings.simplefilter("error", DeprecationWarning)
            counts = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0)
    except (ValueError, DeprecationWarning):
        raise TraceError(f"{path}:{lineno}: per-minute counts must be integers") from None
    if counts.size != minutes:
        got = 4 + (text.count(",") + 1 if text else 0)
        raise TraceError(f"{path}:{lineno}: expected {minutes + 4} columns, got {got}")
    if (counts < 0).any():
        raise TraceError(f"{path}:{lineno}: a per-minute count is negative")
    if (counts > MAX_REQUESTS).any():  # (past 2**63 numpy reads the largest int64)
        raise TraceError(f"{path}:{lineno}: a per-minute count is past {MAX_REQUESTS:,}")
    return counts


def _read_azure2019(path: Path, mapping: TraceMapping, rng) -> Trace:
    keys, counts, total = [], [], 0
    rows = _minute_rows(path)
    minutes, columns = next(rows)
    for lineno, cells, text in rows:
        counts.append(_counts_2019(path, lineno, text, minutes, columns))
        total += int(counts[-1].sum())  # (each at most MAX_REQUESTS: no int64 wrap-around)
        if total > MAX_REQUESTS:
            raise TraceError(
                f"{path}: more than {MAX_REQUESTS:,} requests: window or sample the trace first"
            )
        keys.append(f"{cells[0]}/{cells[1]}/{cells[2]}")
    if not keys:
        raise TraceError(f"{path}: no function rows")
    resolved = [mapping.resolve(k) for k in keys]
    models = sorted({m for m, _ in resolved})
    tenants = sorted({t for _, t in resolved})
    times, model_idx, tenant_idx = [], [], []
    for (model, tenant), c in zip(resolved, counts, strict=True):
        t = spread_counts(c, 60.0, rng)
        times.append(t)  # integer codes, not strings: a day is ~10 M requests
        model_idx.append(np.full(t.size, models.index(model), np.int32))
        tenant_idx.append(np.full(t.size, tenants.index(tenant), np.int32))
    t = np.concatenate(times)
    if t.size == 0:
        raise TraceError(f"{path}: the trace has no requests")
    order = np.argsort(t, kind="stable")
    return Trace(
        path.name,
        t[order],
        np.concatenate(model_idx)[order],
        np.concatenate(tenant_idx)[order],
        tuple(models),
        tuple(tenants),
        {"warnings": mapping.unmatched(keys)},
    )


def _read_azure2021(path: Path, mapping: TraceMapping, rng) -> Trace:
    # one str per distinct function, a C double per start (a str and a float object per row
    # held ~200 bytes each: 10 M invocations, ~2 GB)
    starts, keys, col, interned = array("d"), [], {}, {}
    for lineno, row in rows(path):
        if lineno == 1:
            col = columns(path, row, HEADERS["azure2021"])
            app, func, end_at, took = (col[n] for n in HEADERS["azure2021"])
            width = max(col.values()) + 1
            continue
        if not row:
            continue
        if len(row) < width:
            raise TraceError(f"{path}:{lineno}: expected app,func,end_timestamp,duration")
        try:
            end, duration = float(row[end_at]), float(row[took])
        except ValueError:
            raise TraceError(
                f"{path}:{lineno}: end_timestamp and duration must be numbers"
            ) from None
        if not duration >= 0:  # (a negative one put the start after the end, silently)
            raise TraceError(f"{path}:{lineno}: duration {row[took]} is not a number >= 0")
        if end < 0:  # (seconds from the trace's start: rebased before, silently)
            raise TraceError(f"{path}:{lineno}: end_timestamp {row[end_at]} is negative")
        starts.append(end - duration)
        key = f"{row[app]}/{row[func]}"
        keys.append(interned.setdefault(key, key))
    return _mapped(path, starts, keys, mapping)


def _mapped(path: Path, starts: list[float], keys: list[str], mapping: TraceMapping) -> Trace:
    if not starts:
        raise TraceError(f"{path}: no requests")
    resolved = {k: mapping.resolve(k) for k in set(keys)}
    models = [resolved[k][0] for k in keys]
    tenants = [resolved[k][1] for k in keys]
    trace = _build(path.name, starts, models, tenants)
    trace.extra["warnings"] = mapping.unmatched(resolved)
    return trace


def _read_azure_llm(path: Path, mapping: TraceMapping, rng) -> Trace:
    stamps, at = [], 0
    for lineno, row in rows(path):
        if lineno == 1:
            at = columns(path, row, ("TIMESTAMP",))["TIMESTAMP"]
        elif row:
            if len(row) <= at:
                raise TraceError(f"{path}:{lineno}: no TIMESTAMP column on this line")
            stamps.append(row[at])
    try:
        with warnings.catch_warnings():  # "+00:00" (the 2024 release): converted to UTC, right
            warnings.simplefilter("ignore", UserWarning)
            t = np.array(stamps, dtype="datetime64[us]")
    except ValueError as exc:
        raise TraceError(f"{path}: a TIMESTAMP is not a date-time: {exc}") from None
    if t.size == 0:
        raise TraceError(f"{path}: no requests")
    return _uniform_trace(path.name, (t - t.min()).astype(np.int64) / 1e6, mapping)


def _read_mooncake(path: Path, mapping: TraceMapping, rng) -> Trace:
    ms = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            try:
                if line.strip():
                    stamp = json.loads(line)["timestamp"]
                    if isinstance(stamp, bool):  # (JSON true is no time: read as 1 ms)
                        raise TypeError
                    ms.append(float(stamp))
            except (ValueError, KeyError, TypeError):
                raise TraceError(
                    f"{path}:{lineno}: expected a JSON object with a numeric 'timestamp' (ms)"
                ) from None
            if ms and ms[-1] < 0:  # (rebased before, silently, as the other formats refuse)
                raise TraceError(f"{path}:{lineno}: timestamp {ms[-1]:g} ms is negative")
    return _uniform_trace(path.name, np.array(ms) / 1000.0, mapping)  # (none: 'no requests')


def _numeric(path: Path, min_cols: int) -> np.ndarray:
    with warnings.catch_warnings():  # "input contained no data": said below, in one line
        warnings.simplefilter("ignore", UserWarning)
        try:
            with open_text(path) as f:
                data = np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64)
        except UnicodeDecodeError:
            raise  # (a binary file: "not a text file", not "expected numbers only")
        except ValueError as exc:
            raise TraceError(_loadtxt_error(path, str(exc))) from None
    if data.shape[0] == 0:
        raise TraceError(f"{path}: no requests")
    if data.shape[1] < min_cols:
        raise TraceError(f"{path}: expected at least {min_cols} numeric columns per line")
    if not np.isfinite(data).all():
        raise TraceError(f"{path}: a value is not a finite number")
    return data


def _loadtxt_error(path: Path, text: str) -> str:
    """The first line numpy could not read, in our words: ``FILE:LINE: ...``. numpy counts data
    rows, not lines (blank lines and comments aside; from 0 or 1 by error), and told a CLI user
    to "use `usecols` to select a subset", an argument of its own."""
    width = None
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cells = [c.strip() for c in line.split(",")]
            width = len(cells) if width is None else width
            if len(cells) != width:
                return f"{path}:{lineno}: expected {width} numbers a line (as the first), got {len(cells)}"
            for cell in cells:
                try:
                    float(cell)
                except ValueError:
                    return f"{path}:{lineno}: expected numbers only: {cell[:40]!r} is not one"
    return f"{path}: expected numbers only: {text.split('; use `usecols`')[0]}"


def _read_per_second(path: Path, mapping: TraceMapping, rng) -> Trace:
    data = _numeric(path, 2)
    whole = data[:, 0] == np.round(data[:, 0])
    if not whole.all():  # (7.5 was read as second 7, silently)
        bad = data[np.argmin(whole), 0]
        raise TraceError(
            f"{path}: the first column is a whole second in a per-second trace, not {bad:g}"
            " (for arrival times use a csv trace: timestamp_s,model[,tenant])"
        )
    sec, count = data[:, 0].astype(np.int64), data[:, -1]
    if (count < 0).any() or (sec < 0).any() or (count != np.round(count)).any():
        raise TraceError(f"{path}: seconds and counts must be non-negative integers")
    if sec.max() - sec.min() > MAX_SPAN_S:  # (a bincount that long filled the memory)
        raise TraceError(f"{path}: the seconds span more than 366 days")
    counts = np.bincount(sec - sec.min(), weights=count).astype(np.int64)
    return _uniform_trace(path.name, spread_counts(counts, 1.0, rng), mapping)


def _read_gaps(path: Path, mapping: TraceMapping, rng) -> Trace:
    gaps = _numeric(path, 1)[:, 0]
    if (gaps < 0).any():
        raise TraceError(f"{path}: an inter-arrival gap is negative")
    if gaps.sum() > MAX_SPAN_S:  # (1e30 then 1: both read as 0 s, past float precision)
        raise TraceError(f"{path}: the gaps add up to more than 366 days: seconds expected")
    return _uniform_trace(path.name, np.cumsum(gaps), mapping)


READERS = {
    "azure2019": _read_azure2019,
    "azure2021": _read_azure2021,
    "azure-llm": _read_azure_llm,
    "mooncake": _read_mooncake,
    "per-second": _read_per_second,
    "gaps": _read_gaps,
    "csv": read_csv,
}


def read_days(pattern: str, fmt: str, mapping: TraceMapping, seed: int) -> Trace:
    """Azure 2019 daily files matched by a glob (``...anon.d*.csv``), one day after another:
    a name's ``dNN`` is its day (a missing day is a day without requests), else name order.
    Each day spreads its minutes with its own seed (``seed`` + its place)."""
    paths = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not paths and not Path(pattern).exists():  # (read as one file: "does not exist")
        raise TraceError(f"trace file {pattern} does not exist: no file matches the pattern")
    if len(paths) < 2:
        return _read_file(Path(paths[0] if paths else pattern), fmt, mapping, seed)
    numbers = [re.search(r"[._-]d(\d+)[._]", p.name) for p in paths]
    days = [int(m.group(1)) for m in numbers if m]
    if len(set(days)) != len(paths):
        days = list(range(len(paths)))
    parts = []
    for k, (day, path) in enumerate(sorted(zip(days, paths, strict=True))):
        trace = _read_file(path, fmt, mapping, seed + k)
        kind = fmt if fmt != "auto" else detect_format(path)
        if kind != "azure2019":
            raise TraceError(
                f"{pattern}: a pattern of several files reads Azure 2019 daily files; "
                f"{path.name} is {kind}"
            )
        parts.append((day - min(days), trace))
    models = sorted({m for _, t in parts for m in t.models})
    tenants = sorted({n for _, t in parts for n in t.tenants})
    return Trace(
        f"{paths[0].name} .. {paths[-1].name}",
        np.concatenate([t.arrivals_s + day * 86400.0 for day, t in parts]),
        np.concatenate(
            [np.array([models.index(m) for m in t.models])[t.model_idx] for _, t in parts]
        ).astype(np.int32),
        np.concatenate(
            [np.array([tenants.index(n) for n in t.tenants])[t.tenant_idx] for _, t in parts]
        ).astype(np.int32),
        tuple(models),
        tuple(tenants),
    )
