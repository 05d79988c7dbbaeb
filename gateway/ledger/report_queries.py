"""Read queries of the tenant report (``gateway.reports``): no row object per ledger row.

- ``group_sums``: counts and cost sums per (tenant, model, path, day), GROUP BY in SQL. A cost
  is summed in two parts: its whole microdollars (``ROUND(usd * 1e6)``, integers: exact in any
  order, on SQLite and PostgreSQL alike) and what is left (under half a microdollar a row, a float
  sum whose rounding is ~1e-16 of that), added exactly (``Fraction``). The result is the rows'
  exact sum as ``math.fsum`` gives it, up to ~1e-16 relative, however the rows are grouped.
- ``ok_latencies``: the latencies of answered requests (2xx), as float64 numpy arrays per
  (tenant, model, path, day): 8 bytes a row. Read in time slices of at most ``SLICE_ROWS`` rows,
  each slice's group keys coded as small integers in SQL.

``query(sql, params)`` is ``Ledger.query`` ({p} placeholders). Rows written between the two reads
(a live gateway) can be in the latencies and not in the sums: a few requests, not a wrong bill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

MICRO = 10**6  # costs are summed in whole microdollars and the rest
SLICE_ROWS = 50_000  # rows (of the whole window) per latency read
DAY_S = 86400.0


@dataclass(frozen=True)
class Window:
    tenant: str | None = None
    since_ts: float | None = None
    until_ts: float | None = None


def where(win: Window, tenant: bool = True) -> tuple[str, list]:
    """The WHERE clause ('' or ' WHERE ...') of the window, and its parameters."""
    clauses, params = [], []
    if win.tenant and tenant:
        clauses.append("tenant = {p}")
        params.append(win.tenant)
    if win.since_ts is not None:
        clauses.append("ts >= {p}")
        params.append(win.since_ts)
    if win.until_ts is not None:
        clauses.append("ts < {p}")
        params.append(win.until_ts)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def day_expr(query) -> str:
    """The UTC day number of ``ts`` (floor(ts / 86400)) in this database's SQL: SQLite's CAST
    truncates (ts >= 0), PostgreSQL's rounds, so it needs FLOOR (which SQLite may lack)."""
    truncates = int(query("SELECT CAST(2.75 AS INTEGER)")[0][0]) == 2
    return "CAST(ts / 86400 AS INTEGER)" if truncates else "CAST(FLOOR(ts / 86400) AS BIGINT)"


def _micro(column: str) -> str:
    """Two sums of ``column``: whole microdollars (an integer), and the rest (microdollars)."""
    whole = f"ROUND({column} * 1e6)"
    return f"SUM(CAST({whole} AS BIGINT)), SUM({column} * 1e6 - {whole})"


def _usd(whole, rest) -> Fraction:
    """Microdollars of a ``_micro`` pair, exactly."""
    return Fraction(int(whole or 0)) + Fraction(float(rest or 0.0))


# the function fee part of a burst row: min(invocations x fee, the row's function cost)
_INVOCATIONS = "(CASE WHEN COALESCE(workers, 0) > 1 THEN workers + 1 ELSE 1 END)"
_FEE = (
    f"(CASE WHEN function_cost_usd > 0 THEN (CASE WHEN {_INVOCATIONS} * {{p}} < function_cost_usd"
    f" THEN {_INVOCATIONS} * {{p}} ELSE function_cost_usd END) ELSE 0 END)"
)
_OK = "(CASE WHEN status >= 200 AND status < 300 THEN 1 ELSE 0 END)"
_COUNTED = "(CASE WHEN (status >= 200 AND status < 300) OR status >= 500 THEN 1 ELSE 0 END)"


@dataclass
class GroupSums:
    """One (tenant, model, path, day) of the window; costs in microdollars (exact)."""

    requests: int
    answered: int
    counted: int  # answered or failed by the service (5xx): what SLO attainment divides by
    vm: Fraction
    function: Fraction
    fees: Fraction
    store: Fraction
    cost: Fraction
    max_ts: float


def group_sums(
    query, win: Window, fee_usd: float, day: str
) -> dict[tuple[str, str, str, int], GroupSums]:
    """(tenant, model, path, day number) -> its sums, for the window."""
    where_sql, params = where(win)
    sql = (
        f"SELECT tenant, model, path, {day}, COUNT(*), SUM({_OK}), SUM({_COUNTED}), "
        f"{_micro('vm_cost_usd')}, {_micro('function_cost_usd')}, {_micro(_FEE)}, "
        f"{_micro('store_cost_usd')}, {_micro('cost_usd')}, MAX(ts) FROM requests{where_sql} "
        f"GROUP BY tenant, model, path, {day}"
    )
    rows = query(sql, (*[fee_usd] * sql[: sql.index(" FROM ")].count("{p}"), *params))
    found = {}
    for t, m, p, d, n, ok, counted, *money, max_ts in rows:
        costs = [_usd(money[i], money[i + 1]) for i in range(0, 10, 2)]
        found[(t, m, p, int(d))] = GroupSums(
            int(n), int(ok or 0), int(counted or 0), *costs, float(max_ts)
        )
    return found


def vm_sum_all(query, win: Window) -> Fraction:
    """Every tenant's VM share in the window, in microdollars."""
    where_sql, params = where(win, tenant=False)
    found = query(f"SELECT {_micro('vm_cost_usd')} FROM requests{where_sql}", tuple(params))
    return _usd(*found[0]) if found else Fraction(0)


def ok_latencies(
    query, win: Window, sums: dict[tuple[str, str, str, int], GroupSums], day: str
) -> dict[tuple[str, str, str, int], np.ndarray]:
    """Latencies (ms) of the 2xx rows of each group in ``sums``."""
    combos = sorted({key[:3] for key in sums})
    if not combos:
        return {}
    code = " ".join(
        f"WHEN tenant = {{p}} AND model = {{p}} AND path = {{p}} THEN {i}"
        for i in range(len(combos))
    )
    where_sql, params = where(win)
    sql = (
        f"SELECT CASE {code} ELSE -1 END, {day}, latency_ms FROM requests{where_sql}"
        f"{' AND' if where_sql else ' WHERE'} status >= 200 AND status < 300 AND ts >= {{p}} "
    )
    combo_params = [v for combo in combos for v in combo]
    parts: dict[tuple[int, int], list[np.ndarray]] = {}
    for lo, hi, last in _slices(sums, win):
        upper = "AND ts <= {p}" if last else "AND ts < {p}"
        rows = query(sql + upper, (*combo_params, *params, lo, hi))
        if not rows:
            continue
        arr = np.array(rows, dtype=float)
        del rows
        keys = arr[:, 0].astype(np.int64) * 1_000_000 + arr[:, 1].astype(np.int64)
        order = np.argsort(keys, kind="stable")
        keys, lat = keys[order], arr[order, 2]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
            gid, d = divmod(int(keys[s]), 1_000_000)
            if gid >= 0:
                parts.setdefault((gid, d), []).append(lat[s:e].copy())
    return {(*combos[gid], d): np.concatenate(chunks) for (gid, d), chunks in parts.items()}


def _slices(sums, win: Window) -> list[tuple[float, float, bool]]:
    """Contiguous [lo, hi) time slices over the window's days, each with about SLICE_ROWS rows
    (the last one closed: it ends at the window's last row)."""
    per_day: dict[int, int] = {}
    for (_, _, _, d), s in sums.items():
        per_day[d] = per_day.get(d, 0) + s.requests
    last_ts = max(s.max_ts for s in sums.values())
    days = sorted(per_day)
    # (a day's first row may be a rounding below its midnight: ts / 86400 rounds up)
    bounds = [win.since_ts if win.since_ts is not None else days[0] * DAY_S - 1.0]
    for d in days:
        pieces = max(1, math.ceil(per_day[d] / SLICE_ROWS))
        start, end = bounds[-1], min((d + 1) * DAY_S, last_ts)
        for i in range(1, pieces + 1):
            bounds.append(start + (end - start) * i / pieces)
    bounds[-1] = last_ts
    bounds = [min(b, last_ts) for b in bounds]
    spans = [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]
    if not spans:
        return [(bounds[0], last_ts, True)]
    return [(lo, hi, i == len(spans) - 1) for i, (lo, hi) in enumerate(spans)]
