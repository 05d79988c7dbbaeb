# size: ~355 lines: the flags, the replay with its progress, metrics poll and Ctrl-C, and
# the checks of keys, tenants and config that run before anything is sent
"""``tidegate loadgen``: replay a trace open-loop against a live gateway."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time

HELP = (
    "Replay a request trace open-loop against a live gateway (binary tensors over aiohttp), "
    "recording latency, path and cost per request; the summary has the simulator's shape."
)

_GAUGE = re.compile(r'^tidegate_vm_replicas\{state="(ready|booting)"\} ([0-9.eE+-]+)$', re.M)
_LONG_KEYS = ("tenants", "vm_replicas_timeline")  # in --json, not on the terminal
FALLBACK_SLO_MS = 300.0  # (a model whose metadata states no slo_ms: loadgen_summary)
MAX_REPLAY_S = 31 * 86400.0  # a slower --speedup is a typo, not a plan
_BILLED = re.compile(r"^tidegate_function_billed_seconds_total\{[^}]*\} ([0-9.eE+-]+)$", re.M)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--trace",
        required=True,
        help="trace file or synth:KIND[:k=v,...] (as `tidegate simulate` reads)",
    )
    parser.add_argument(
        "--trace-format",
        default="auto",
        help="force the trace format: azure2019, azure2021, azure-llm, mooncake, per-second, "
        "gaps or csv (default: told by the first line; docs/ops.md, Traces)",
    )
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="model for every request (default: each one's own)")
    parser.add_argument(
        "--config",
        help="a config whose [trace] table maps the trace's functions to models and tenants "
        "(as `tidegate simulate --config` reads it; default: none)",
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
        help="multiply the trace's request rate (shape kept; default 1)",
    )
    parser.add_argument(
        "--duration-s", type=float, help="replay only the first seconds (default: the whole trace)"
    )
    parser.add_argument(
        "--api-key",
        help="API key for every request (default: none, or per tenant by --key or --config)",
    )
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="TENANT=KEY",
        help="API key per trace tenant (repeatable; default: none, --api-key for all)",
    )
    _add_measure_arguments(parser)


def _add_measure_arguments(parser) -> None:
    """How the answers are judged and priced, and where the results go."""
    from ops.cli import seed_int

    parser.add_argument(
        "--slo-ms",
        type=float,
        help="SLO for attainment (ms) of tenants without their own slo_ms in --config "
        f"(default: each model's slo_ms from the gateway, else {FALLBACK_SLO_MS:g})",
    )
    parser.add_argument(
        "--vm-usd-per-hour",
        type=float,
        help="VM price for the fleet cost (default: policies.costs.PriceTable)",
    )
    parser.add_argument(
        "--fn-memory-mb",
        type=int,
        default=1024,
        help="function memory size, for GB-s from billed seconds (default 1024)",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=60.0, help="per-request timeout (default 60)"
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        help="seed of the trace's random draws: synth: traces, arrivals spread within a "
        "minute or second, --rate-scale's copies (default: [trace] seed, else 0)",
    )
    parser.add_argument("--json", dest="json_out", help="write the summary JSON here (default: no)")
    parser.add_argument(
        "--csv",
        dest="csv_out",
        help="write one line per request here: index, tenant, sent_s, latency_ms, status "
        "(0: no HTTP answer), path, cost_usd, cold_starts (default: not written)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: one)")


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


def _progress(args, total: int):
    """tqdm on a terminal, a plain line per tenth otherwise (a log gets no carriage returns)."""
    if args.no_progress:
        return None
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, unit="req", file=sys.stderr, desc="replay", leave=False)
    from ops.commands.loadgen_summary import LineProgress

    return LineProgress(total)


async def _main(args, trace, model: str | list[str], keys: dict) -> dict:
    from ops.commands.loadgen_summary import judge_by_model, summarize
    from ops.loadgen import replay

    bar = _progress(args, len(trace))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: stop, summarise what came back
    poller = asyncio.create_task(_poll_metrics(args.url, stop))
    model_slos: dict[str, float] = {}  # (each model's, from its metadata)
    try:
        tenants = [trace.tenants[i] for i in trace.tenant_idx]
        results, wall, ended = await replay(
            args.url,
            model,
            trace.arrivals_s.tolist(),
            tenants,
            keys,
            speedup=args.speedup,
            timeout_s=args.timeout_s,
            progress=bar,
            stop=stop,
            slo_ms_by_model=model_slos,
        )
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        stop.set()
        fleet = await poller
        if bar:
            bar.close()
    if args.csv_out:
        import csv

        with open(args.csv_out, "w", newline="") as f:  # (a tenant "a,b" is one quoted cell)
            out = csv.writer(f, lineterminator="\n")
            out.writerow(
                ["index", "tenant", "sent_s", "latency_ms", "status", "path", "cost_usd"]
                + ["cold_starts"]
            )
            for r in results:
                out.writerow(
                    [r.index, r.tenant, f"{r.sent_s:.6f}", f"{r.latency_ms:.3f}", r.status]
                    + [r.path, f"{r.cost_usd:.10f}", r.cold_starts]
                )
    names = [model] if isinstance(model, str) else sorted(set(model))
    slo_of, judged = judge_by_model(args, model, model_slos)
    return summarize(results, wall, fleet, args, trace, ",".join(names), ended, slo_of) | judged


def _check_arguments(args) -> None:
    """Every number in range, the URL one aiohttp can call, outputs writable: before the
    replay, so a typo does not cost a run."""
    from urllib.parse import urlsplit

    from ops.cli import CliError
    from ops.commands.outputs import check_writable

    if not (0 < args.speedup < float("inf") and 0 < args.rate_scale < float("inf")):
        raise CliError("--speedup and --rate-scale must be finite numbers > 0")
    if args.duration_s is not None and not args.duration_s > 0:
        raise CliError("--duration-s must be > 0")
    if not 0 < args.timeout_s < float("inf"):  # (inf: an OverflowError inside aiohttp)
        raise CliError("--timeout-s must be a finite number > 0")
    slo_ok = args.slo_ms is None or 0 < args.slo_ms < float("inf")
    if not slo_ok or not args.fn_memory_mb > 0:
        raise CliError("--slo-ms (a finite number) and --fn-memory-mb must be > 0")
    if args.vm_usd_per_hour is not None and not 0 <= args.vm_usd_per_hour < float("inf"):
        raise CliError("--vm-usd-per-hour must be a finite number >= 0")
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CliError(f"--url {args.url!r}: expected http://HOST[:PORT]")
    check_writable(args.json_out, "--json")
    check_writable(args.csv_out, "--csv")


def _keys(args, trace) -> dict:
    """Each trace tenant's API key: --key, else --api-key, else the first plain ``api_keys``
    entry of that tenant in --config's ``[[tenants]]`` (the gateway's own config serves)."""
    from ops.cli import CliError

    keys = _config_keys(args.config)
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
    sending = [trace.tenants[i] for i in sorted(set(trace.tenant_idx.tolist()))]
    if args.api_key:
        keys = {t: keys.get(t, args.api_key) for t in sending}
    keys = {t: k for t, k in keys.items() if t in sending}
    missing = [t for t in sending if t not in keys]
    if keys and missing:  # a keyed gateway would answer all of theirs 401
        raise CliError(
            f"no API key for the trace's tenant(s) {', '.join(missing)}: give --key TENANT=KEY, "
            "--api-key, or their api_keys in --config's [[tenants]]"
        )
    return keys


def _config_tenants(path: str | None) -> list[dict]:
    if not path:
        return []
    import tomllib

    with open(path, "rb") as f:  # load_config has read and checked it already
        return tomllib.load(f).get("tenants", [])


def _config_keys(path: str | None) -> dict:
    return {t["name"]: t["api_keys"][0] for t in _config_tenants(path) if t.get("api_keys")}


def tenant_deadlines_ms(path: str | None) -> dict[str, float]:
    """Each --config async-class tenant's deadline: its queued requests are judged by it, as
    the gateway and the simulator judge them (``deadline_s``, else the async queue's default)."""
    import tomllib

    if not path:
        return {}
    with open(path, "rb") as f:
        data = tomllib.load(f)
    default_s = float(data.get("async_queue", {}).get("default_deadline_s", 3600.0))
    return {
        t["name"]: float(t.get("deadline_s") or default_s) * 1000.0
        for t in data.get("tenants", [])
        if t.get("slo_class") == "async"
    }


def tenant_slos(path: str | None) -> dict[str, float]:
    """Each --config tenant's own slo_ms (attainment is judged by it, as the gateway does)."""
    return {t["name"]: float(t["slo_ms"]) for t in _config_tenants(path) if t.get("slo_ms")}


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
        for line in trace.extra.get("warnings", ()):
            print(f"tidegate loadgen: warning: {line}", file=sys.stderr)
        if args.rate_scale != 1.0:
            trace = trace.scaled(rate_factor=args.rate_scale, seed=args.seed)
        if args.duration_s:
            trace = trace.window(0.0, args.duration_s)
    except TraceError as exc:
        raise CliError(str(exc)) from None
    if len(trace) == 0:
        where = f"the first {args.duration_s:g} s of " if args.duration_s else ""
        scaled = f" at --rate-scale {args.rate_scale:g}" if args.rate_scale != 1.0 else ""
        raise CliError(f"no requests in {where}the trace{scaled}")
    models = [args.model] if args.model else list(trace.models)
    model = models[0] if len(models) == 1 else [trace.models[i] for i in trace.model_idx]
    if trace.duration_s / args.speedup > MAX_REPLAY_S:
        raise CliError(
            f"--speedup {args.speedup:g}: replaying the trace's {trace.duration_s:g} s would take "
            f"{trace.duration_s / args.speedup / 86400:.3g} days (more than 31)"
        )
    keys = _keys(args, trace)
    named = [t for t in trace.tenants if t != "default"]
    if not keys and named:  # the summary splits them; the gateway's ledger cannot
        print(
            f"tidegate loadgen: note: no API keys: the trace's tenants ({', '.join(named)}) "
            "reach the gateway as one keyless caller (give --key TENANT=KEY or --config)",
            file=sys.stderr,
        )
    try:
        summary = asyncio.run(_main(args, trace, model, keys))
    except (RuntimeError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({k: v for k, v in summary.items() if k not in _LONG_KEYS}, indent=2))
    if args.json_out:
        write_text(args.json_out, json.dumps(summary, indent=2), "--json")
    from ops.commands.loadgen_summary import verdict

    status, line = verdict(summary)
    if line:
        print(line, file=sys.stderr)
    return status
