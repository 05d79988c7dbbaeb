"""A report (``gateway.reports.Report``) as a table, CSV, JSON or a self-contained HTML page:
what ``tidegate report --format`` prints and ``GET /admin/reports/tenants/{tenant}?format=``
answers, from the same code."""

from __future__ import annotations

import csv
import html
import io
import json
import math

from .reports import Report, Usage

PARTS = (
    ("vm_usd", "VM share", "#2ca02c"),
    ("idle_vm_usd", "VM idle", "#98df8a"),
    ("function_compute_usd", "fn compute", "#d62728"),
    ("function_requests_usd", "fn requests", "#ff9896"),
    ("store_usd", "storage", "#9467bd"),
)
FIELDS = (
    ("requests", "answered", "slo_attainment", "p50_ms", "p99_ms")
    + tuple(p for p, _, _ in PARTS)
    + ("cost_usd",)
)


def _shown(name: str) -> str:
    """A name as the terminal table shows it: control characters (a tab, a line end, an
    escape sequence that would recolour or clear the operator's terminal) written as escapes."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in name)


def _line(name: str, u: Usage) -> list[str]:
    name = _shown(name)
    att = "-" if u.slo_attainment is None else f"{u.slo_attainment * 100:.2f}"
    p99 = "-" if u.p99_ms is None else f"{u.p99_ms:.1f}"
    return (
        [name, str(u.requests), att, p99]
        + [f"{getattr(u, p):.6f}" for p, _, _ in PARTS]
        + [f"{u.cost_usd:.6f}"]
    )


def render_table(report: Report) -> str:
    head = (
        ["tenant", "requests", "attain %", "p99 ms"]
        + [label for _, label, _ in PARTS]
        + ["total $"]
    )
    rows = [head] + [_line(n, u) for n, u in report.tenants.items()]
    if report.groups:
        for g in report.groups:
            name = "  " + "/".join(str(v) for v in g.key.values())
            rows.append(_line(name, g))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append(_footer(report))
    for note in (report.note, report.idle_note):
        if note:
            out.append(f"note: {note}")
    return "\n".join(out)


def _footer(report: Report) -> str:
    """The total and what it is made of: the ledger's rows plus the idle VM part they carry
    (one tenant's report carries its share of the fleet's idle bill, not all of it)."""
    total = math.fsum(u.cost_usd for u in report.tenants.values())
    ledger = f"${report.ledger_total_usd:.6f}"
    tenant = report.filter.tenant
    if tenant is None:
        return (
            f"total ${total:.6f} over {len(report.tenants)} "
            f"tenant{'' if len(report.tenants) == 1 else 's'} (ledger {ledger}"
            f" + idle VM ${report.idle_vm_usd:.6f})"
        )
    share = math.fsum(u.idle_vm_usd for u in report.tenants.values())
    return (
        f"total ${total:.6f} for {tenant} (its ledger {ledger} + its share ${share:.6f} "
        f"of the fleet's idle VM ${report.idle_vm_usd:.6f})"
    )


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    keys = list(report.filter.by)
    writer = csv.writer(buf)
    writer.writerow(["tenant"] + keys + list(FIELDS))
    if report.groups:
        for g in report.groups:
            writer.writerow(
                [_cell(g.key["tenant"])]
                + [_cell(str(g.key[k])) for k in keys]
                + [_csv(f, getattr(g, f)) for f in FIELDS]
            )
    else:
        for name, u in report.tenants.items():
            writer.writerow([_cell(name)] + [_csv(f, getattr(u, f)) for f in FIELDS])
    return buf.getvalue()


# A text cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets
# (a tenant named =HYPERLINK(...) would run on opening the file): OWASP's CSV injection advice
# is a leading ' (shown by none of them, and kept visible in the cell's text).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A text cell (tenant, model, path, day) that no spreadsheet runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(name: str, value) -> str:
    if value is None:
        return ""
    if name.endswith("_usd"):
        return repr(float(value))  # every digit: a spreadsheet's sum reconciles to the cent
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def _bars(report: Report) -> str:
    names = list(report.tenants)
    top = max((u.cost_usd for u in report.tenants.values()), default=0.0) or 1.0
    row_h, left, width = 26, 160, 600
    parts = [
        f'<svg width="{left + width + 40}" height="{row_h * len(names) + 40}" role="img" '
        'aria-label="cost by tenant">'
    ]
    for i, name in enumerate(names):
        u, x = report.tenants[name], float(left)
        y = 10 + i * row_h
        parts.append(f'<text x="4" y="{y + 15}" font-size="12">{html.escape(name)}</text>')
        for attr, label, color in PARTS:
            w = getattr(u, attr) / top * width
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" '
                    f'fill="{color}"><title>{label}: ${getattr(u, attr):.6f}</title>'
                    "</rect>"
                )
                x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}" font-size="11">${u.cost_usd:.4f}</text>')
    legend_y = row_h * len(names) + 30
    for k, (_, label, color) in enumerate(PARTS):
        parts.append(
            f'<rect x="{left + 110 * k}" y="{legend_y - 10}" width="10" height="10" '
            f'fill="{color}"/><text x="{left + 110 * k + 14}" y="{legend_y}" '
            f'font-size="11">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _attainment(report: Report) -> str:
    """Requests per tenant (bar) with SLO attainment beside it."""
    names = list(report.tenants)
    top = max((u.requests for u in report.tenants.values()), default=0) or 1
    row_h, left, width = 26, 160, 500
    parts = [
        f'<svg width="{left + width + 160}" height="{row_h * len(names) + 20}" role="img" '
        'aria-label="requests and SLO attainment by tenant">'
    ]
    for i, name in enumerate(names):
        u, y = report.tenants[name], 10 + i * row_h
        w = u.requests / top * width
        att = "-" if u.slo_attainment is None else f"{u.slo_attainment * 100:.2f} %"
        color = "#1f77b4" if u.slo_attainment is None or u.slo_attainment >= 0.99 else "#ff7f0e"
        parts.append(
            f'<text x="4" y="{y + 15}" font-size="12">{html.escape(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
            f"<title>{u.requests} requests</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="11">{u.requests} req, '
            f"SLO {att}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    table = render_table(report)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tidegate cost report"
        "</title><style>body{font-family:sans-serif;margin:24px} pre{background:#f6f6f6;"
        "padding:12px}</style></head><body><h1>Cost by tenant</h1>"
        + _bars(report)
        + "<h2>Requests and SLO attainment</h2>"
        + _attainment(report)
        + "<h2>Details</h2><pre>"
        + html.escape(table)
        + "</pre><p>VM share: each VM "
        "request's share of its batch's service time. VM idle: the fleet's bill minus those "
        "shares, split by share of VM busy time (only when a VM bill is given).</p>"
        "</body></html>"
    )


RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json, "html": render_html}
MEDIA_TYPES = {
    "table": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}
