"""``tidegate report``: what each tenant cost, from the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

# a larger bill is a typo (1e300 filled the table with 300-digit dollars), and past it a float
# has no cents left to reconcile to (at 1e12: 2e-4 dollars between neighbours; at 1e15: 0.125)
MAX_VM_BILL_USD = 1e12
HELP = (
    "Per-tenant cost report from the ledger: requests, SLO attainment, p99 and cost split into "
    "VM share, VM idle, function compute, function requests and storage."
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--data-dir",
        default=".tidegate",
        help="the gateway's data_dir (its ledger.sqlite); default .tidegate",
    )
    parser.add_argument(
        "--ledger",
        help="ledger URL instead (postgresql://... or a file; default: DATA_DIR's)",
    )
    parser.add_argument("--tenant", help="only this tenant (default: every tenant)")
    parser.add_argument(
        "--since", help="from this time: ISO 8601 (UTC) or epoch seconds (default: the first row)"
    )
    parser.add_argument(
        "--until",
        help="before this time: ISO 8601 (UTC) or epoch seconds (default: after the last row)",
    )
    parser.add_argument(
        "--by", default="", help="also group by any of model,path,day (default: by tenant only)"
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json", "html"),
        default="table",
        help="table (default) for a terminal, csv (every digit of each dollar amount), json, "
        "or a self-contained html page with two charts",
    )
    parser.add_argument("--out", help="write here (default: stdout)")
    parser.add_argument(
        "--config", help="the serve config, for tenants' SLOs (slo_ms; default: none)"
    )
    parser.add_argument(
        "--slo-ms",
        type=float,
        help="SLO for tenants without one (default: each model's slo_ms in the repository, "
        "the --config's repo or DATA_DIR/models, as the gateway's report judges; else 500)",
    )
    parser.add_argument(
        "--vm-bill-usd",
        type=float,
        help="the VM fleet's bill for the period: its idle part is attributed "
        "to tenants by share of VM busy time (by share of requests in a window without VM "
        "busy time; default: none, VM idle shows 0)",
    )


def run(args) -> int:
    from gateway.errors import TidegateError
    from gateway.reports import build_report, make_filter
    from ops.cli import CliError
    from ops.commands.outputs import check_writable, write_text
    from ops.report import RENDERERS, LedgerMissing, open_ledger

    if args.slo_ms is not None and not 0 < args.slo_ms < float("inf"):
        raise CliError("--slo-ms must be a finite number > 0")
    if args.vm_bill_usd is not None and not 0 <= args.vm_bill_usd <= MAX_VM_BILL_USD:
        raise CliError(
            f"--vm-bill-usd must be a finite number >= 0, in dollars, at most "
            f"{MAX_VM_BILL_USD:,.0f} (got {args.vm_bill_usd:g})"
        )
    for flag, value in (("--since", args.since), ("--until", args.until)):
        if value is not None and not value.strip():  # ("$START" unset: not the whole ledger)
            raise CliError(f"{flag} is empty: give a time (ISO 8601 or epoch seconds) or omit it")
    if args.tenant is not None and not args.tenant.strip():  # ("$T" unset: every tenant's
        # rows under one tenant's footer, "total $... for  (its ledger ...)")
        raise CliError("--tenant is empty: give a tenant's name or omit it for every tenant")
    check_writable(args.out, "--out")
    try:
        filt = make_filter(args.tenant, args.since, args.until, args.by)
        query = open_ledger(args.data_dir, args.ledger)
        slos, repo = _tenant_slos(args.config)
        model_slo = _model_slos(repo or Path(args.data_dir) / "models")
        if args.tenant:
            _check_tenant(query, args.tenant, slos, bool(args.config))
        report = build_report(
            query,
            filt,
            lambda t, m: slos.get(t) or args.slo_ms or model_slo(m),
            vm_bill_usd=args.vm_bill_usd,
        )
    except (TidegateError, LedgerMissing) as exc:
        raise CliError(getattr(exc, "message", str(exc))) from None
    text = RENDERERS[args.format](report)
    if args.out:
        # a line end as on stdout: `cat report.txt` ended on the prompt's line, `wc -l` one short
        write_text(args.out, text if text.endswith("\n") else text + "\n", "--out")
        print(f"report: {args.out}", file=sys.stderr)
    else:
        _print(text)
    return 0


def _print(text: str) -> None:
    """To stdout; a reader that closes early (``tidegate report | head``) ends it quietly."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:  # the interpreter's own flush at exit would raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _check_tenant(query, tenant: str, slos: dict[str, float], configured: bool) -> None:
    """An unknown tenant is a typo, not an empty report: CliError naming the known ones (the
    ledger's, and the --config's). A known tenant with nothing in the window reports zero.
    Without --config only the ledger's are named (the assumed ``default`` may not exist)."""
    from ops.cli import CliError

    if tenant in slos:
        return
    found = query("SELECT 1 FROM requests WHERE tenant = {p} LIMIT 1", (tenant,))
    if found:
        return
    known = {r[0] for r in query("SELECT DISTINCT tenant FROM requests")}
    known = sorted(known | set(slos)) if configured else sorted(known)
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    hint = "" if configured else "; --config FILE names tenants without requests yet"
    raise CliError(
        f"unknown tenant {tenant!r}: not in the ledger or --config "
        f"(tenants: {shown or 'none'}){hint}"
    )


def _model_slos(repo: Path):
    """model -> its config's slo_ms in ``repo``, else 500 (the gateway's rule for a tenant
    without its own SLO: before, the report judged every model by 500 ms, so ResNet-18's
    300 ms SLO read better here than at ``GET /admin/reports/...``)."""
    from vmpool.artifact import ArtifactError, load_artifact

    known: dict[str, float] = {}

    def slo_ms(model: str) -> float:
        if model not in known:
            try:
                known[model] = load_artifact(repo, model).config.slo_ms
            except (ArtifactError, OSError, ValueError):  # gone, or a name no repo holds
                known[model] = 500.0
        return known[model]

    return slo_ms


def _tenant_slos(config: str | None) -> tuple[dict[str, float | None], Path | None]:
    """(tenant -> SLO (ms), None for a tenant without its own; the model repository) from a
    serve config. A gateway without tenants (no config, or none in it) answers as ``default``:
    that tenant is known before its first request, as ``GET /admin/reports`` knows it."""
    from gateway.tenants.registry import DEFAULT_TENANT

    if not config:
        return {DEFAULT_TENANT: None}, None
    from ops.cli import CliError
    from ops.sim.config import ConfigError, load_config

    try:
        settings = load_config(config).settings
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    slos = {t.name: t.slo_ms for t in settings.tenants} or {DEFAULT_TENANT: None}
    return slos, settings.repo_path
