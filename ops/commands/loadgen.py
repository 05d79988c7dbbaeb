"""``tidegate loadgen``: replay a trace open-loop against a live gateway."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

HELP = (
    "Replay a request trace open-loop against a live gateway (binary tensors over aiohttp), "
    "recording latency, path and cost per request; the summary has the simulator's shape."
)

_GAUGE = re.compile(r'^tidegate_vm_replicas\{state="(ready|booting)"\} ([0-9.eE+-]+)$', re.M)
_LONG_KEYS = ("tenants", "vm_replicas_timeline")  # in --json, not on the terminal
_BILLED = re.compile(r"^tidegate_function_billed_seconds_total\{[^}]*\} ([0-9.eE+-]+)$", re.M)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--trace",
        required=True,
        help="trace file or synth:KIND[:k=v,...] (as `tidegate simulate` reads)",
    )
    parser.add_argument("--trace-format", default="auto", help="force the trace format")
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="model for every request (default: each one's own)")
    parser.add_argument(
        "--config",
        help="a config whose [trace] table maps the trace's functions to models and tenants "
        "(as `tidegate simulate --config` reads it)",
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="replay this many times faster than recorded (default 1)",
    )
    parser.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="multiply the trace's request rate (shape kept)",
    )
    parser.add_argument("--duration-s", type=float, help="replay only the first seconds")
    parser.add_argument("--api-key", help="API key for every request")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="TENANT=KEY",
        help="API key per trace tenant (repeatable)",
    )
    parser.add_argument("--slo-ms", type=float, default=300.0, help="SLO for attainment (ms)")
    parser.add_argument(
        "--vm-usd-per-hour",
        type=float,
        help="VM price for the fleet cost (default: policies.costs.PriceTable)",
    )
    parser.add_argument(
        "--fn-memory-mb",
        type=int,
        default=1024,
        help="function memory size, for GB-s from billed seconds",
    )
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", dest="json_out", help="write the summary JSON here")
    parser.add_argument(
        "--csv",
        dest="csv_out",
        help="write one line per request here (sent_s, "
        "latency_ms, status, path, cost_usd, cold_starts, tenant)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


async def _poll_metrics(url: str, stop: asyncio.Event, period_s: float = 1.0) -> dict:
    """Integrate ready + booting VM replicas over time from /metrics (VM-seconds billed)."""
    import aiohttp

    out = {"vm_s": 0.0, "billed_start": None, "billed_end": None, "peak": 0, "timeline": []}
    last = t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        while True:
            try:
                async with s.get(url.rstrip("/") + "/metrics") as r:
                    text = await r.text()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                text = ""
            now = time.perf_counter()
            replicas = sum(float(v) for _, v in _GAUGE.findall(text))
            out["vm_s"] += replicas * (now - last)
            out["timeline"].append((round(now - t0, 2), replicas))  # beside the simulated one
            out["peak"] = max(out["peak"], int(replicas))
            last = now
            billed = sum(float(v) for v in _BILLED.findall(text)) if text else None
            if billed is not None:
                out["billed_start"] = billed if out["billed_start"] is None else out["billed_start"]
                out["billed_end"] = billed
            if stop.is_set():
                return out
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except asyncio.TimeoutError:
                pass


def summarize(results, wall_s: float, fleet: dict, args, trace_name: str, model: str) -> dict:
    """The simulator's JSON keys, measured."""
    import numpy as np

    from policies.costs import PriceTable

    prices = PriceTable()
    vm_price = args.vm_usd_per_hour or prices.vm_usd_per_hour
    lat = np.array([r.latency_ms for r in results])
    ok = np.array([200 <= r.status < 300 for r in results])
    met = ok & (lat <= args.slo_ms)
    burst_usd = sum(r.cost_usd for r in results if r.path == "burst")
    vm_usd = fleet["vm_s"] * vm_price / 3600.0
    billed_s = (fleet["billed_end"] or 0.0) - (fleet["billed_start"] or 0.0)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    tenants = {}
    for name in sorted({r.tenant for r in results}):
        mine = [r for r in results if r.tenant == name]
        t_lat = np.array([r.latency_ms for r in mine if 200 <= r.status < 300])
        tenants[name] = {
            "requests": len(mine),
            "cost_usd": sum(r.cost_usd for r in mine),
            "slo_attainment": sum(
                1 for r in mine if 200 <= r.status < 300 and r.latency_ms <= args.slo_ms
            )
            / len(mine),
            "p99_ms": float(np.percentile(t_lat, 99)) if t_lat.size else None,
        }
    n = len(results)
    return {
        "policy": "live",
        "trace": trace_name,
        "model": model,
        "requests": n,
        "duration_s": round(wall_s * args.speedup, 3),
        "wall_s": round(wall_s, 3),
        "slo_ms": args.slo_ms,
        "slo_attainment": float(met.mean()) if n else 1.0,
        "p50_ms": float(np.percentile(lat[ok], 50)) if ok.any() else None,
        "p99_ms": float(np.percentile(lat[ok], 99)) if ok.any() else None,
        "cost_usd": vm_usd + burst_usd,
        "vm_usd": vm_usd,
        "burst_usd": burst_usd,
        "attributed_cost_usd": sum(r.cost_usd for r in results),
        "vm_hours": fleet["vm_s"] / 3600.0,
        "function_gb_s": billed_s * args.fn_memory_mb / 1024.0,
        "cold_starts": sum(r.cold_starts for r in results),
        "requests_vm": sum(1 for r in results if r.path == "vm"),
        "requests_burst": sum(1 for r in results if r.path == "burst"),
        "rejected": int((~ok).sum()),
        "spill_ratio": (sum(1 for r in results if r.path == "burst") / n) if n else 0.0,
        "peak_vm_replicas": fleet["peak"],
        "vm_replicas_timeline": fleet["timeline"],
        "statuses": statuses,
        "tenants": tenants,
    }


async def _main(args, trace, model: str | list[str], keys: dict) -> dict:
    from ops.loadgen import replay

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(trace), unit="req", file=sys.stderr, desc="replay")
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_metrics(args.url, stop))
    try:
        tenants = [trace.tenants[i] for i in trace.tenant_idx]
        results, wall = await replay(
            args.url,
            model,
            trace.arrivals_s.tolist(),
            tenants,
            keys,
            speedup=args.speedup,
            timeout_s=args.timeout_s,
            progress=bar,
        )
    finally:
        stop.set()
        fleet = await poller
        if bar:
            bar.close()
    if args.csv_out:
        with open(args.csv_out, "w") as f:
            f.write("index,tenant,sent_s,latency_ms,status,path,cost_usd,cold_starts\n")
            for r in results:
                f.write(
                    f"{r.index},{r.tenant},{r.sent_s:.6f},{r.latency_ms:.3f},{r.status},"
                    f"{r.path},{r.cost_usd:.10f},{r.cold_starts}\n"
                )
    names = [model] if isinstance(model, str) else sorted(set(model))
    return summarize(results, wall, fleet, args, trace.name, ",".join(names))


def _check_arguments(args) -> None:
    """Every number in range, the URL one aiohttp can call, outputs writable: before the
    replay, so a typo does not cost a run."""
    from urllib.parse import urlsplit

    from ops.cli import CliError
    from ops.commands.outputs import check_writable

    if not (0 < args.speedup < float("inf") and 0 < args.rate_scale < float("inf")):
        raise CliError("--speedup and --rate-scale must be finite numbers > 0")
    for flag, value in (("--duration-s", args.duration_s), ("--timeout-s", args.timeout_s)):
        if value is not None and not value > 0:
            raise CliError(f"{flag} must be > 0")
    if not args.slo_ms > 0 or not args.fn_memory_mb > 0:
        raise CliError("--slo-ms and --fn-memory-mb must be > 0")
    if args.vm_usd_per_hour is not None and not args.vm_usd_per_hour >= 0:
        raise CliError("--vm-usd-per-hour must be >= 0")
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CliError(f"--url {args.url!r}: expected http://HOST[:PORT]")
    check_writable(args.json_out, "--json")
    check_writable(args.csv_out, "--csv")


def _keys(args, trace) -> dict:
    from ops.cli import CliError

    keys = {}
    for item in args.key:
        tenant, eq, key = item.partition("=")
        if not eq:
            raise CliError(f"--key {item!r}: expected TENANT=KEY")
        if tenant not in trace.tenants:
            raise CliError(
                f"--key {item!r}: the trace has no tenant {tenant!r} "
                f"(tenants: {', '.join(trace.tenants)})"
            )
        keys[tenant] = key
    return keys


def run(args) -> int:
    from ops.cli import CliError
    from ops.commands.outputs import write_text
    from ops.traces import TraceError, TraceMapping, read_trace

    _check_arguments(args)
    try:
        mapping = TraceMapping()
        if args.config:
            from ops.sim.config import ConfigError, load_config

            try:
                mapping = load_config(args.config).mapping
            except ConfigError as exc:
                raise CliError(str(exc)) from None
        fmt = args.trace_format if args.trace_format != "auto" else mapping.fmt
        if args.seed is None:
            args.seed = mapping.seed if mapping.seed is not None else 0
        trace = read_trace(args.trace, fmt, mapping, seed=args.seed)
        if args.rate_scale != 1.0:
            trace = trace.scaled(rate_factor=args.rate_scale, seed=args.seed)
        if args.duration_s:
            trace = trace.window(0.0, args.duration_s)
    except TraceError as exc:
        raise CliError(str(exc)) from None
    if len(trace) == 0:
        raise CliError(f"no requests in the first {args.duration_s:g} s of the trace")
    models = [args.model] if args.model else list(trace.models)
    model = models[0] if len(models) == 1 else [trace.models[i] for i in trace.model_idx]
    keys = _keys(args, trace)
    if args.api_key:
        keys = {t: keys.get(t, args.api_key) for t in trace.tenants}
    try:
        summary = asyncio.run(_main(args, trace, model, keys))
    except (RuntimeError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({k: v for k, v in summary.items() if k not in _LONG_KEYS}, indent=2))
    if args.json_out:
        write_text(args.json_out, json.dumps(summary, indent=2), "--json")
    return 0
