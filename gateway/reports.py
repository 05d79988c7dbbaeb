"""Per-tenant cost and SLO reports from the ledger, and ``GET /admin/reports/tenants/{tenant}``.

Costs come from the ledger rows, split into four parts:
- ``vm_usd``: each VM request's share of its replica's time (its batch's service time split
  over the batch's rows), as the gateway billed it;
- ``function_compute_usd`` and ``function_requests_usd``: the burst path's GB-s and per-invocation
  fees (invocations per request: the ``invocations`` column when the ledger has one, else the
  plan's workers plus the master);
- ``store_usd``: object-store requests of the burst path.

Idle VM time is not in any row (no request used it). Given the fleet's VM bill for the period
(``vm_bill_usd``), the report attributes the idle part, bill minus the rows' VM share, to tenants
by their share of VM busy time, as ``idle_vm_usd`` (in a window without VM busy time, by their
share of requests). Without it, idle time stays unattributed and the tenants' sum equals the
ledger's total exactly; with it, the ledger's total plus the idle part.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from fractions import Fraction

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from policies.costs import PriceTable

from .errors import BadRequest, NotFound
from .infer_endpoint import NOTE_KEY
from .ledger import report_queries as rq
from .ledger import retention
from .report_time import parse_time
from .routes import ERROR_SCHEMA, json_response
from .state import GatewayState

GROUP_KEYS = ("model", "path", "day")
_MEDIA = ("application/json", "text/csv", "text/html", "text/plain")


@dataclass(frozen=True)
class ReportFilter:
    tenant: str | None = None
    since_ts: float | None = None
    until_ts: float | None = None
    by: tuple[str, ...] = ()


@dataclass
class Usage:
    """One line of a report: a tenant, or a tenant and a (model, path, day) group."""

    requests: int = 0
    answered: int = 0
    slo_attainment: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    vm_usd: float = 0.0
    idle_vm_usd: float = 0.0
    function_compute_usd: float = 0.0
    function_requests_usd: float = 0.0
    store_usd: float = 0.0
    cost_usd: float = 0.0
    key: dict = field(default_factory=dict)


@dataclass
class Report:
    filter: ReportFilter
    ledger_total_usd: float
    idle_vm_usd: float
    tenants: dict[str, Usage]
    groups: list[Usage]
    note: str | None = None  # the window reaches before pruned rows (gateway.ledger.retention)
    pruned_before_ts: float | None = None
    idle_note: str | None = None  # how the idle VM bill was split, when not by busy time

    def as_dict(self) -> dict:
        return (
            {
                "since_ts": self.filter.since_ts,
                "until_ts": self.filter.until_ts,
                "ledger_total_usd": self.ledger_total_usd,
                "idle_vm_usd": self.idle_vm_usd,
                "total_usd": math.fsum(u.cost_usd for u in self.tenants.values()),
                "tenants": {name: _public(u) for name, u in self.tenants.items()},
                "groups": [_public(g) for g in self.groups],
            }
            | ({"note": self.note, "pruned_before_ts": self.pruned_before_ts} if self.note else {})
            | ({"idle_vm_note": self.idle_note} if self.idle_note else {})
        )


def _public(u: Usage) -> dict:
    d = asdict(u)
    if not d["key"]:
        d.pop("key")
    return d


def make_filter(
    tenant: str | None, since: str | None, until: str | None, by: str = ""
) -> ReportFilter:
    """A filter from its text form (CLI flags, query parameters); BadRequest on a bad time, a
    window that ends before it starts, or an unknown grouping."""
    filt = ReportFilter(
        tenant,
        parse_time(since),
        parse_time(until),
        tuple(dict.fromkeys(k.strip() for k in by.split(",") if k.strip())),  # once each
    )
    if None not in (filt.since_ts, filt.until_ts) and filt.since_ts >= filt.until_ts:
        raise BadRequest(f"since ({since}) must be before until ({until})")
    for key in filt.by:
        if key not in GROUP_KEYS:
            raise BadRequest(f"cannot group by {key!r}; choose from {', '.join(GROUP_KEYS)}")
    return filt


def build_report(
    query,
    filt: ReportFilter,
    slo_ms,
    prices: PriceTable | None = None,
    vm_bill_usd: float | None = None,
) -> Report:
    """The report of the window. ``query(sql, params)`` is ``Ledger.query`` ({p} placeholders);
    ``slo_ms(tenant, model) -> ms``. Sums come from SQL (``gateway.ledger.report_queries``), the
    latencies of answered requests as numpy arrays: no Python object per ledger row. Idle VM time
    (``vm_bill_usd``) is split as ``_idle_rule`` says."""
    prices = prices or PriceTable()
    for key in filt.by:
        if key not in GROUP_KEYS:
            raise BadRequest(f"cannot group by {key!r}; choose from {', '.join(GROUP_KEYS)}")
    win = rq.Window(filt.tenant, filt.since_ts, filt.until_ts)
    day = rq.day_expr(query)
    sums = rq.group_sums(query, win, prices.fn_usd_per_request, day)
    latencies = rq.ok_latencies(query, win, sums, day) if sums else {}
    idle, weigh, total_weight, idle_note = _idle_rule(query, win, sums, vm_bill_usd)
    by_tenant: dict[str, list] = {}
    for key in sorted(sums):
        by_tenant.setdefault(key[0], []).append(key)
    tenants, groups = {}, []
    for tenant, keys in by_tenant.items():
        t_weight = weigh(keys)
        share = float(t_weight / total_weight) if total_weight > 0 else 0.0
        tenants[tenant] = _usage(keys, sums, latencies, slo_ms, idle * share)
        if filt.by:
            buckets: dict[tuple, list] = {}
            for k in keys:
                buckets.setdefault(_group_key(k, filt.by), []).append(k)
            for gkey, gkeys in sorted(buckets.items()):
                g_share = float(weigh(gkeys) / t_weight) if t_weight > 0 else 0.0
                u = _usage(gkeys, sums, latencies, slo_ms, idle * share * g_share)
                u.key = {"tenant": tenant, **dict(zip(filt.by, gkey, strict=True))}
                groups.append(u)
    if filt.tenant and filt.tenant not in tenants:  # a tenant with nothing in the window
        tenants[filt.tenant] = Usage()
    ledger_total = _dollars(sum(s.cost for s in sums.values()))
    horizon = retention.pruned_before(query)
    note = retention.coverage_note(horizon, filt.since_ts)
    pruned = horizon if note else None
    return Report(filt, ledger_total, idle, tenants, groups, note, pruned, idle_note)


def _idle_rule(query, win: rq.Window, sums: dict, vm_bill_usd: float | None):
    """``(idle_usd, weigh(keys), total_weight, note)``: the fleet's idle VM dollars and how they
    are split. By VM busy time (microdollars of VM share, every tenant's in the window); in a
    window with no VM busy time at all (only burst requests), by share of requests, so the
    idle bill is still carried by someone (it was left out: the tenants summed to the ledger
    alone while the footer added the bill). None of it without a bill or without requests."""
    if vm_bill_usd is None:
        return 0.0, lambda keys: 0, 0, None
    busy_all = sum(s.vm for s in sums.values())
    if win.tenant:
        busy_all = rq.vm_sum_all(query, win)
    idle = max(vm_bill_usd - float(busy_all / rq.MICRO), 0.0)
    if busy_all > 0:
        return idle, lambda keys: sum(sums[k].vm for k in keys), busy_all, None
    count = sum(s.requests for s in sums.values())
    if win.tenant:
        where_sql, params = rq.where(win, tenant=False)
        count = int(query(f"SELECT COUNT(*) FROM requests{where_sql}", tuple(params))[0][0])
    if count == 0:  # nobody to carry it: the footer shows it beside a zero total
        return idle, lambda keys: 0, 0, None
    note = "no VM busy time in the window: the idle VM bill is split by share of requests"
    return idle, lambda keys: sum(sums[k].requests for k in keys), count, note


def _group_key(key: tuple, by: tuple[str, ...]) -> tuple:
    """The --by values of a (tenant, model, path, day number)."""
    day = datetime.fromtimestamp(key[3] * 86400, timezone.utc).strftime("%Y-%m-%d")
    values = {"model": key[1], "path": key[2], "day": day}
    return tuple(values[k] for k in by)


def _usage(keys: list, sums: dict, latencies: dict, slo_ms, idle_usd: float) -> Usage:
    """The line of the (tenant, model, path, day) groups ``keys``."""
    parts = [sums[k] for k in keys]
    answered = sum(s.answered for s in parts)
    counted = sum(s.counted for s in parts)
    met = sum(
        int(np.count_nonzero(latencies[k] <= float(slo_ms(k[0], k[1]))))
        for k in keys
        if k in latencies
    )
    found = [latencies[k] for k in keys if k in latencies]
    ok = np.concatenate(found) if found else np.empty(0)
    fees = sum(s.fees for s in parts)
    u = Usage(
        requests=sum(s.requests for s in parts),
        answered=answered,
        # (a live ledger's row written between the two reads: never more met than counted)
        slo_attainment=min(met, counted) / counted if counted else None,
        p50_ms=float(np.percentile(ok, 50)) if ok.size else None,
        p99_ms=float(np.percentile(ok, 99)) if ok.size else None,
        vm_usd=_dollars(sum(s.vm for s in parts)),
        idle_vm_usd=idle_usd,
        function_compute_usd=_dollars(sum(s.function for s in parts) - fees),
        function_requests_usd=_dollars(fees),
        store_usd=_dollars(sum(s.store for s in parts)),
    )
    u.cost_usd = _dollars(sum(s.cost for s in parts)) + idle_usd
    return u


def _dollars(microdollars) -> float:
    return float(Fraction(microdollars) / rq.MICRO)


def _caller_may_read(state: GatewayState, request: Request, tenant: str) -> None:
    """The admin key and an admin tenant's read any tenant; a tenant's key reads only its own
    (403 otherwise, never telling whether that tenant exists). A gateway without tenants
    answers as its admin API does (loopback callers only)."""
    from .admin import authorize

    registry, h = state.tenants, request.headers
    if registry.open:
        return authorize(state, request)
    admin_key = state.settings.admin_api_key
    auth = h.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else h.get("x-api-key")
    if admin_key and given and hmac.compare_digest(given.encode(), admin_key.encode()):
        return
    caller = registry.authenticate(h.get("authorization"), h.get("x-api-key"))
    note = request.scope.get(NOTE_KEY)
    if note is not None:  # the access line names who asked, as an infer call's does
        note["tenant"] = caller.name
    if not caller.settings.admin:
        registry.authorize_usage(caller, tenant)


def _unknown_tenant(state: GatewayState, tenant: str) -> str | None:
    """For an admin caller: None for a tenant configured (an open gateway's "default" too) or
    in the ledger, else the 404's message naming the known ones, as ``tidegate report --tenant``
    says. A typo is not an empty report: an open gateway answered 200 with zeros. Ledger reads:
    run it in a thread."""
    if state.tenants.get(tenant) is not None or state.ledger is None:
        return None
    query = state.ledger.query
    if query("SELECT 1 FROM requests WHERE tenant = {p} LIMIT 1", (tenant,)):
        return None
    known = {r[0] for r in query("SELECT DISTINCT tenant FROM requests")}
    known |= {t.name for t in state.tenants.tenants()}
    shown = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
    return f"unknown tenant {tenant!r}: not configured or in the ledger (tenants: {shown})"


_PARAMS = ("since", "until", "by", "format")


def _known_params_only(request: Request) -> None:
    """400 for a query parameter the report does not take: ``?sinse=`` answered the whole
    ledger's report, as if the window had been applied."""
    for name in request.query_params:
        if name not in _PARAMS:
            close = difflib.get_close_matches(name.lower(), _PARAMS, 1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise BadRequest(
                f"unknown query parameter {name!r}: {hint}the report takes {', '.join(_PARAMS)}"
            )


def reports_router(state: GatewayState) -> APIRouter:
    router = APIRouter(tags=["Reports"])
    for t in state.settings.tenants:  # budgets as a series, for the budget alert
        if t.daily_budget_usd is not None:
            state.metrics.tenant_budget.labels(t.name).set(t.daily_budget_usd)

    error = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}

    @router.get(
        "/admin/reports/tenants/{tenant:path}",  # a tenant name may hold a slash
        responses={  # documented for schema fuzzing
            200: {
                "description": "The report: JSON, or with ?format= CSV, HTML or a text table",
                "content": {t: {} for t in _MEDIA},
            },
            400: {**error, "description": "A bad time, grouping or format"},
            401: {**error, "description": "Missing or unknown key"},
            403: {**error, "description": "Another tenant's usage, or not the admin key"},
            404: {**error, "description": "No such tenant (admin callers)"},
            503: {**error, "description": "No ledger yet"},
        },
    )
    async def tenant_report(
        request: Request,
        tenant: str,
        since: str | None = None,
        until: str | None = None,
        by: str = Query("", description="model,path,day"),
        fmt: str = Query("json", alias="format", description="json, csv, html or table"),
    ):
        from .report_render import MEDIA_TYPES, RENDERERS

        _caller_may_read(state, request, tenant)
        _known_params_only(request)
        if fmt not in RENDERERS:  # (a typo answered JSON, as if the format were taken)
            raise BadRequest(f"format must be one of {', '.join(RENDERERS)}, not {fmt!r}")
        unknown = await asyncio.to_thread(_unknown_tenant, state, tenant)
        if unknown:
            raise NotFound(unknown)
        if state.ledger is None:
            return json_response({"error": "the gateway has no ledger yet"}, 503)
        filt = make_filter(tenant, since, until, by)
        models = state.models
        slos = {t.name: t.slo_ms for t in state.settings.tenants if t.slo_ms}

        def slo_ms(t: str, m: str) -> float:
            return slos.get(t) or (models[m].slo_ms if m in models else 500.0)

        def build() -> Report:  # a thread: SQL sums, and 8 bytes a row of latencies (numpy)
            return build_report(state.ledger.query, filt, slo_ms)

        report = await asyncio.to_thread(build)
        if fmt != "json":
            return Response(RENDERERS[fmt](report), media_type=MEDIA_TYPES[fmt])
        doc = report.as_dict()
        doc["tenant"] = tenant
        doc["tenants"].setdefault(tenant, _public(Usage()))
        return json_response(doc)

    return router
