"""Async class under a step to 4x VM capacity: a real gateway, the local VM pool (boot delay) and
function runtime, the ``delay`` model (as ``autoscale_e2e.py``: little CPU, so 2 shared cores
carry it). Two tenants share the endpoint:

- ``web`` (interactive): half of one replica's capacity, all along;
- ``batch`` (``slo_class = "async"``, a deadline): nothing, then for the step the rest of 4x one
  replica's capacity, sent as plain infer calls; the router (``QueueFirst``) queues them (202)
  when the queue meets the deadline.

So for the step the offered load is 4x what the VMs held before it. Scenario ``async-class``
against ``all-interactive`` (the same traffic, ``batch`` an interactive tenant). Per tenant:
requests, SLO (web) or deadline (batch) attainment, p50/p99, paths, function cost; and the
replica count over time. Async answers are read from the gateway's queue records (accepted and
answered times, path, cost).

    python ops/bench/async_step.py [--quick] [--only NAME ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ops.bench.autoscale_e2e import Shape, write_config  # noqa: E402
from ops.bench.autoscale_load import scrape  # noqa: E402
from ops.bench.error_breakdown import breakdown, join, ledger_errors, print_breakdown  # noqa: E402
from ops.bench.procs import start, stop, wait_http  # noqa: E402
from vmpool.procs import free_port  # noqa: E402

SCENARIOS = ("async-class", "all-interactive")
KEYS = {"web": "k-web", "batch": "k-batch"}
ADMIN_KEY = "k-admin"  # /admin/paths (the replica counts) with tenants configured
ROUTING = "slo-aware"  # interactive calls spill to functions only when the VMs would miss the SLO
# KEDA-style: replicas for the queue and for in-flight requests, the larger wins
SCALING = {
    "policy": "queue",
    "target_per_replica": 40,
    "target_in_flight_per_replica": 4,
    "cooldown_s": 30,
    # while the queue is active, spills meet warm instances (cold ones took 10-12 s here)
    "warm_functions": 4,
}


@dataclass
class Sent:
    tenant: str
    sent_s: float
    latency_ms: float
    status: int
    path: str = "-"
    cost_usd: float = 0.0
    job_id: str | None = None  # a 202: answered later, read from the queue's records
    request_id: str = ""  # joins an error to its ledger row (ops/bench/error_breakdown.py)
    error: str = ""  # the error body of a non-200/202 answer


@dataclass
class Load:
    sent: list[Sent] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)  # (t, desired, ready, booting)


def poisson(rate_per_s: float, start_s: float, span_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / rate_per_s, int(rate_per_s * span_s * 1.5) + 10))
    return start_s + times[times < span_s]


def web_arrivals(shape: Shape, seed: int = 7) -> np.ndarray:
    """Poisson at half one replica's capacity, the whole run."""
    return poisson(shape.steady_rate, 0.0, shape.duration_s, seed)


def batch_arrivals(shape: Shape, seed: int = 11) -> np.ndarray:
    """Poisson during the step only, at what takes the total to 4x one replica's capacity."""
    rate = 4.0 * shape.capacity_per_s - shape.steady_rate
    return poisson(rate, shape.steady_s, shape.step_s, seed)


def config(path: Path, scenario: str, shape: Shape, deadline_s: float) -> None:
    write_config(path, ROUTING, SCALING, shape)
    batch_class = "async" if scenario == "async-class" else "interactive"
    extra = [
        "[async_queue]",
        "consumers = 16",
        "slots_per_replica = 4",  # half a batch: interactive calls find room before the spill
        "[[tenants]]",
        'name = "web"',
        f'api_keys = ["{KEYS["web"]}"]',
        "[[tenants]]",
        'name = "batch"',
        f'api_keys = ["{KEYS["batch"]}"]',
        f'slo_class = "{batch_class}"',
        f"deadline_s = {deadline_s}",
    ]
    with path.open("a") as f:
        f.write("\n".join(extra) + "\n")


async def drive(url: str, plan: list[tuple[float, str]], load: Load) -> None:
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    ).encode()
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()

        async def one(sent_s: float, tenant: str) -> None:
            start_s = time.perf_counter()
            headers = {"content-type": "application/json", "x-api-key": KEYS[tenant]}
            try:
                async with session.post(
                    f"{url}/v2/models/delay/infer", data=body, headers=headers
                ) as r:
                    answer = await r.read()
                    rec = Sent(tenant, sent_s, (time.perf_counter() - start_s) * 1e3, r.status)
                    rec.path = r.headers.get("x-tidegate-path", "-")
                    rec.cost_usd = float(r.headers.get("x-tidegate-cost-usd", 0.0))
                    rec.request_id = r.headers.get("x-request-id", "")
                    if r.status not in (200, 202):
                        rec.error = answer.decode("utf-8", "replace")[:300]
                    if r.status == 202:
                        rec.job_id, rec.path = json.loads(answer)["id"], "queued"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                rec = Sent(tenant, sent_s, (time.perf_counter() - start_s) * 1e3, 599)
                rec.error = f"client: {type(exc).__name__}"
            load.sent.append(rec)

        async def sampler() -> None:
            while True:
                try:
                    admin = {"x-api-key": ADMIN_KEY}
                    async with session.get(f"{url}/admin/paths", headers=admin) as r:
                        vm = (await r.json())["vm"]
                    t = time.perf_counter() - t0
                    load.samples.append((t, vm["desired"], vm["ready"], vm["booting"]))
                except (aiohttp.ClientError, asyncio.TimeoutError, KeyError):
                    pass
                await asyncio.sleep(1.0)

        sampling = asyncio.ensure_future(sampler())
        tasks = []
        for sent_s, tenant in plan:
            delay = t0 + sent_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(sent_s, tenant)))
        await asyncio.gather(*tasks)
        sampling.cancel()


def admin_paths(url: str) -> dict:
    import urllib.request

    req = urllib.request.Request(url + "/admin/paths", headers={"x-api-key": ADMIN_KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def answers(db_path: Path, wait_s: float) -> dict[str, dict]:
    """The queue's records once every job finished (or ``wait_s`` passed): per job id, its
    state, status, wait from acceptance to answer, path and cost."""
    deadline = time.monotonic() + wait_s
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        while time.monotonic() < deadline:
            (open_jobs,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')"
            ).fetchone()
            if open_jobs == 0:
                break
            time.sleep(1.0)
        rows = db.execute(
            "SELECT id, state, status, created_s, finished_s, result_headers FROM jobs"
        ).fetchall()
    out = {}
    for job_id, state, status, created_s, finished_s, headers in rows:
        h = json.loads(headers) if headers else {}
        out[job_id] = {
            "state": state,
            "status": status,
            "wait_s": (finished_s - created_s) if finished_s else math.inf,
            "path": h.get("x-tidegate-path", "-"),
            "cost_usd": float(h.get("x-tidegate-cost-usd", 0.0)),
        }
    return out


def run_scenario(scenario: str, repo: Path, work: Path, shape: Shape, args) -> dict:
    cfg = work / f"{scenario}.toml"
    config(cfg, scenario, shape, args.deadline_s)
    port, data = free_port(), work / scenario
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ops", "serve", "--config", str(cfg), "--repo", str(repo)]
    cmd += ["--data-dir", str(data), "--port", str(port), "--grpc-port", "-1"]
    proc = start(cmd, work / f"{scenario}.log", env={"TIDEGATE_ADMIN_API_KEY": ADMIN_KEY})
    plan = sorted(
        [(float(t), "web") for t in web_arrivals(shape)]
        + [(float(t), "batch") for t in batch_arrivals(shape)]
    )
    try:
        wait_http(url + "/v2/health/ready", proc, timeout_s=600)
        time.sleep(args.settle_s)
        cold_start_ms = admin_paths(url)["burst"].get("cold_start_ms")  # measured at start
        before = asyncio.run(scrape(url))
        load = Load()
        asyncio.run(drive(url, plan, load))
        jobs = answers(data / "async-queue.sqlite", wait_s=args.deadline_s)
        after = asyncio.run(scrape(url))
    finally:
        stop(proc)
    result = summarize(scenario, load, jobs, before, after, shape, args.deadline_s)
    result["cold_start_ms_at_start"] = cold_start_ms
    failed = [(s.tenant, s.status, s.request_id, s.error, s.latency_ms) for s in load.sent]
    failed = [f for f in failed if f[1] not in (200, 202)]
    result["errors"] = breakdown(join(failed, ledger_errors(data / "ledger.sqlite")))
    return result


def _tenant_row(sent: list[Sent], jobs: dict, in_step, limit_ms: float) -> dict:
    lat, paths, fn_usd, ok = [], {}, 0.0, []
    for s in sent:
        if s.job_id is not None:  # queued: answered when the records say
            j = jobs.get(s.job_id) or {
                "status": None,
                "wait_s": math.inf,
                "path": "lost",
                "cost_usd": 0,
            }
            status, ms, path, cost = j["status"], j["wait_s"] * 1e3, j["path"], j["cost_usd"]
            path = f"queued>{path}"
        else:
            status, ms, path, cost = s.status, s.latency_ms, s.path, s.cost_usd
        key = path if status == 200 else f"error {status}"
        paths[key] = paths.get(key, 0) + 1
        fn_usd += cost if path.endswith("burst") else 0.0
        ok.append(status == 200 and ms <= limit_ms)
        if status == 200:
            lat.append(ms)
    step_ok = [o for s, o in zip(sent, ok, strict=True) if in_step(s.sent_s)]
    return {
        "requests": len(sent),
        "limit_ms": limit_ms,
        "attainment": sum(ok) / max(len(ok), 1),
        "step_attainment": sum(step_ok) / max(len(step_ok), 1),
        "p50_ms": float(np.percentile(lat, 50)) if lat else math.nan,
        "p99_ms": float(np.percentile(lat, 99)) if lat else math.nan,
        "paths": paths,
        "function_usd": fn_usd,
    }


def summarize(scenario, load: Load, jobs, before, after, shape: Shape, deadline_s) -> dict:
    def in_step(t: float) -> bool:
        return shape.steady_s <= t < shape.steady_s + shape.step_s

    rows = {}
    for tenant in KEYS:
        sent = [s for s in load.sent if s.tenant == tenant]
        queued = scenario == "async-class" and tenant == "batch"
        limit_ms = deadline_s * 1e3 if queued else shape.slo_ms
        rows[tenant] = _tenant_row(sent, jobs, in_step, limit_ms)
    billed = "tidegate_function_billed_seconds_total"
    billed_s = after[billed] - before[billed]
    return {
        "scenario": scenario,
        "tenants": rows,
        "function_billed_s": billed_s,
        "max_replicas": max((s[2] + s[3] for s in load.samples), default=0),
        "replicas": [list(map(lambda v: round(v, 1), s)) for s in load.samples],
    }


def print_table(results: list[dict], shape: Shape, deadline_s: float) -> None:
    print(
        f"\nweb: {shape.steady_rate:.1f} req/s all along; batch: "
        f"{4 * shape.capacity_per_s - shape.steady_rate:.1f} req/s in the {shape.step_s:g} s "
        f"step (4x one replica's {shape.capacity_per_s:.1f}/s in all); web SLO {shape.slo_ms:g} ms, batch "
        f"deadline {deadline_s:g} s (async class) or the SLO (interactive)"
    )
    head = f"{'scenario':<17}{'tenant':<7}{'reqs':>6}{'ok%':>8}{'step%':>8}{'p50ms':>9}"
    print(head + f"{'p99ms':>9}{'fn $':>10}{'maxVM':>6}  paths")
    for r in results:
        for tenant, t in r["tenants"].items():
            paths = ", ".join(f"{k} {v}" for k, v in sorted(t["paths"].items()))
            print(
                f"{r['scenario']:<17}{tenant:<7}{t['requests']:>6}{100 * t['attainment']:>8.2f}"
                f"{100 * t['step_attainment']:>8.2f}{t['p50_ms']:>9.0f}{t['p99_ms']:>9.0f}"
                f"{t['function_usd']:>10.6f}{r['max_replicas']:>6}  {paths}"
            )
    for r in results:
        print(
            f"{r['scenario']}: cold start routing assumed at start {r.get('cold_start_ms_at_start')} ms"
        )
        print_breakdown(f"\nerrors, {r['scenario']} (gateway ms)", r.get("errors", []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases and boots (smoke)")
    ap.add_argument("--only", nargs="*", choices=SCENARIOS, help="a subset of the scenarios")
    ap.add_argument("--deadline-s", type=float, default=600.0, help="the batch tenant's deadline")
    ap.add_argument("--settle-s", type=float, default=10.0, help="idle time before the load")
    ap.add_argument("--json", default=str(ROOT / "ops/bench/results/async_step.json"))
    ap.add_argument("--keep", help="a directory to keep the gateways' logs and data in")
    args = ap.parse_args(argv)
    shape = Shape(boot_delay_s=10.0, steady_s=10.0, step_s=60.0, after_s=10.0)
    if args.quick:
        shape = Shape(boot_delay_s=5.0, steady_s=5.0, step_s=15.0, after_s=5.0)
    results = []
    with tempfile.TemporaryDirectory(prefix="tidegate-async-step-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        from vmpool.export import export_zoo

        opts = {"delay_ms": shape.delay_ms, "per_item_ms": shape.per_item_ms}
        export_zoo("delay", work / "repo", options=opts)
        for scenario in args.only or SCENARIOS:
            print(f"running {scenario} ...", flush=True)
            results.append(run_scenario(scenario, work / "repo", work, shape, args))
    print_table(results, shape, args.deadline_s)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.only and out.exists():  # a scenario run on its own joins the others' results
        ran = {r["scenario"] for r in results}
        earlier = json.loads(out.read_text()).get("results", [])
        results = [r for r in earlier if r["scenario"] not in ran] + results
    payload = {"shape": shape.__dict__, "deadline_s": args.deadline_s, "results": results}
    out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
