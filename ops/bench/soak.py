"""Soak: ``tidegate serve`` on its embedded defaults (local VM pool, local function runtime,
directory store, SQLite ledger; two tenants with keys) driven for ``--minutes`` by an open-loop
mix of traffic, to find what grows.

The mix: binary and JSON v2 infer calls, some forced to the burst path (``X-Tidegate-Route:
burst`` with varied ``X-Tidegate-Workers``), async jobs polled to completion, gRPC infer calls,
bad requests (400, unknown model 404, bad key 401), ``GET /metrics`` and the admin report now
and then, and one ``PUT /admin/policy``. Every ``--sample-s`` it samples the gateway and each
process under it (model servers, function runtime, function instances): RSS, open fds,
threads, child count; the ledger's files, the object store's files and bytes, the access log,
and the Prometheus series count. Prints a table as it goes; writes JSON: first and last
sample, each figure's slope per hour, and answers by kind and status (a 5xx nobody asked for
is a finding).

    python ops/bench/soak.py [--minutes 10] [--model resnet18] [--size 64] [--rate 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import start, stop, wait_http, work_dir  # noqa: E402
from ops.bench.soak_sample import per_request, print_row, process_list, sample  # noqa: E402
from ops.bench.soak_sample import findings, shm_roots, slopes_per_hour  # noqa: E402

KEYS = {"alpha": "soak-key-alpha", "beta": "soak-key-beta"}
ADMIN = "soak-admin-key"
# kind: share of arrivals (open loop: a kind's calls start on schedule, answered or not)
MIX = {
    "binary": 0.30,
    "json": 0.15,
    "burst": 0.12,
    "async": 0.10,
    "grpc": 0.10,
    "bad_400": 0.05,
    "unknown_404": 0.05,
    "bad_key_401": 0.05,
    "metrics": 0.04,
    "report": 0.04,
}


def write_config(work: Path, repo: Path, port: int, grpc_port: int) -> Path:
    tenants = "".join(
        f'[[tenants]]\nname = "{name}"\napi_keys = ["{key}"]\nallow_route_override = true\n'
        for name, key in KEYS.items()
    )
    path = work / "soak.toml"
    path.write_text(
        f'data_dir = "{work / "data"}"\nrepo = "{repo}"\nport = {port}\ngrpc_port = {grpc_port}\n'
        f'admin_api_key = "{ADMIN}"\n{tenants}'
    )
    return path


class Traffic:
    """The open-loop mix against one gateway; answers counted by (kind, status)."""

    def __init__(self, url: str, grpc_url: str, model: str, x: np.ndarray, input_name: str):
        from vmpool.codec import encode_request

        self.url, self.grpc_url, self.model, self.x, self.input = (
            url,
            grpc_url,
            model,
            x,
            input_name,
        )
        self.counts: Counter = Counter()
        self.latency: dict[str, list[float]] = {}
        self.body, self.hlen = encode_request({input_name: x})
        self.json_body = json.dumps(
            {
                "inputs": [
                    {
                        "name": input_name,
                        "shape": list(x.shape),
                        "datatype": "FP32",
                        "data": x.ravel().round(4).tolist(),
                    }
                ]
            }
        ).encode()
        self.rng = random.Random(7)
        self.inflight = 0
        self.grpc = None

    def _headers(self, tenant: str | None = None, **extra) -> dict:
        key = KEYS[tenant or self.rng.choice(list(KEYS))]
        return {"Authorization": f"Bearer {key}", **extra}

    def _binary(self, tenant=None, **extra) -> tuple[bytes, dict]:
        hdrs = self._headers(tenant, **extra)
        hdrs["Inference-Header-Content-Length"] = str(self.hlen)
        hdrs["Content-Type"] = "application/octet-stream"
        return self.body, hdrs

    async def one(self, session, kind: str) -> None:
        t0 = time.monotonic()
        try:
            status = await self._call(session, kind)
        except Exception as exc:  # noqa: BLE001 - a transport failure is a finding too
            status = f"exc:{type(exc).__name__}"
        self.counts[(kind, status)] += 1
        self.latency.setdefault(kind, []).append(time.monotonic() - t0)

    async def _post(self, session, path: str, body: bytes, headers: dict) -> int:
        async with session.post(self.url + path, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def _call(self, session, kind: str):
        infer = f"/v2/models/{self.model}/infer"
        if kind == "binary":
            return await self._post(session, infer, *self._binary())
        if kind == "json":
            hdrs = self._headers(**{"Content-Type": "application/json"})
            return await self._post(session, infer, self.json_body, hdrs)
        if kind == "burst":
            workers = str(self.rng.choice([1, 2, 3, 4]))
            extra = {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": workers}
            return await self._post(session, infer, *self._binary(**extra))
        if kind == "async":
            return await self._async_job(session, infer)
        if kind == "grpc":
            return await self._grpc()
        if kind == "bad_400":
            hdrs = self._headers(**{"Content-Type": "application/json"})
            return await self._post(session, infer, b'{"inputs": [{"name": 1}', hdrs)
        if kind == "unknown_404":  # a fresh name each time: it must not make a new series
            name = f"no-such-model-{self.rng.randrange(10**6)}"
            return await self._post(session, f"/v2/models/{name}/infer", *self._binary())
        if kind == "bad_key_401":
            body, hdrs = self._binary()
            hdrs["Authorization"] = f"Bearer wrong-{self.rng.randrange(10**6)}"
            return await self._post(session, infer, body, hdrs)
        if kind == "metrics":
            async with session.get(self.url + "/metrics") as resp:
                await resp.read()
                return resp.status
        if kind == "report":
            tenant = self.rng.choice(list(KEYS))
            hdrs = {"Authorization": f"Bearer {ADMIN}"}
            path = f"/admin/reports/tenants/{tenant}?by=model,path"
            async with session.get(self.url + path, headers=hdrs) as resp:
                await resp.read()
                return resp.status
        raise ValueError(kind)

    async def _async_job(self, session, infer: str):
        body, hdrs = self._binary(Prefer="respond-async")
        async with session.post(self.url + infer, data=body, headers=hdrs) as resp:
            await resp.read()
            if resp.status != 202:
                return f"submit:{resp.status}"
            location = resp.headers["Location"]
        for _ in range(600):
            async with session.get(self.url + location, headers=hdrs) as resp:
                await resp.read()
                if resp.status != 202:
                    return resp.status
            await asyncio.sleep(0.5)
        return "poll-timeout"

    async def _grpc(self):
        import tritonclient.grpc.aio as g
        from tritonclient.utils import InferenceServerException

        if self.grpc is None:
            self.grpc = g.InferenceServerClient(self.grpc_url)
        inp = g.InferInput(self.input, list(self.x.shape), "FP32")
        inp.set_data_from_numpy(self.x)
        try:
            await self.grpc.infer(self.model, [inp], headers={"x-api-key": KEYS["beta"]})
            return 200
        except InferenceServerException as exc:
            return f"grpc:{exc.status()}"

    async def put_policy(self, session) -> None:
        hdrs = {"Authorization": f"Bearer {ADMIN}"}
        doc = {
            "routing_policy": "threshold",
            "routing_params": {"spill_outstanding_per_replica": 8},
        }
        async with session.put(self.url + "/admin/policy", json=doc, headers=hdrs) as resp:
            await resp.read()
            self.counts[("put_policy", resp.status)] += 1

    async def run(self, session, seconds: float, rate: float, max_inflight: int, mix) -> None:
        """Poisson arrivals at ``rate`` per second; past ``max_inflight`` an arrival is counted
        as dropped (the gateway is not keeping up: a finding, not a queue in the client)."""
        kinds, weights = list(mix), list(mix.values())
        tasks: set[asyncio.Task] = set()
        end = time.monotonic() + seconds
        policy_at = time.monotonic() + seconds / 2
        next_at = time.monotonic()
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if policy_at is not None and time.monotonic() >= policy_at and mix == MIX:
                policy_at = None
                await self.put_policy(session)
            next_at += self.rng.expovariate(rate)
            kind = self.rng.choices(kinds, weights)[0]
            if len(tasks) >= max_inflight:
                self.counts[(kind, "client-dropped")] += 1
                continue
            task = asyncio.create_task(self.one(session, kind))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=180)
        if self.grpc is not None:
            await self.grpc.close()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to drive (default 10)")
    ap.add_argument("--model", default="resnet18", help="zoo model (default resnet18)")
    ap.add_argument("--size", type=int, default=64, help="input height = width (default 64)")
    ap.add_argument("--rate", type=float, default=4.0, help="arrivals per second (default 4)")
    ap.add_argument("--max-inflight", type=int, default=64)
    ap.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples")
    # the gateway gives its ~140 MB start-up heap back 2-5 min in: a whole-run slope was < 0
    warm = "slopes and per-request changes from this minute on (default 5)"
    ap.add_argument("--warmup-min", type=float, default=5.0, help=warm)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/soak.json")
    ap.add_argument(
        "--only",
        choices=list(MIX),
        action="append",
        help="drive only this kind (repeatable), at the full --rate: to bisect what grows",
    )
    ap.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set in the gateway's environment (inherited by its children), e.g. "
        "MALLOC_ARENA_MAX=2",
    )
    probe = "run the gateway under ops/bench/rss_probe.py, its JSON lines to this file"
    ap.add_argument("--probe", type=Path, help=probe)
    ap.add_argument(
        "--probe-args",
        default="",
        help="more rss_probe.py flags, e.g. --probe-args='--tracemalloc --trim-every 60'",
    )
    args = ap.parse_args()
    args.mix = {k: MIX[k] for k in args.only} if args.only else MIX
    return args


def gateway_command(args, config: Path) -> list[str]:
    serve = ["serve", "--config", str(config)]
    if args.probe is None:
        return [sys.executable, "-m", "ops", *serve]
    probe = str(ROOT / "ops/bench/rss_probe.py")
    flags = ["--out", str(args.probe), "--every", str(args.sample_s), *args.probe_args.split()]
    return [sys.executable, probe, *flags, "--", *serve]


async def drive(args, url, grpc_url, pid, data: Path, log: Path, x, roots) -> dict:
    import aiohttp

    traffic = Traffic(url, grpc_url, args.model, x, "input")
    samples: list[dict] = []
    t0 = time.monotonic()
    conn = aiohttp.TCPConnector(limit=args.max_inflight + 8)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        load = asyncio.create_task(
            traffic.run(session, args.minutes * 60, args.rate, args.max_inflight, args.mix)
        )
        print_row(None)
        while True:
            samples.append(await sample(session, url, pid, data, log, t0, traffic, roots))
            print_row(samples[-1])
            if load.done():
                processes = process_list(pid)
                break
            await asyncio.wait({load}, timeout=args.sample_s)
        await load
    lat = {k: round(float(np.percentile(v, 99)) * 1000, 1) for k, v in traffic.latency.items()}
    return {
        "samples": samples,
        "first": samples[0],
        "last": samples[-1],
        "slope_per_hour": slopes_per_hour(samples, args.warmup_min * 60),
        "per_request": per_request(samples, args.warmup_min * 60),
        "by_status": {f"{k} {s}": n for (k, s), n in sorted(traffic.counts.items(), key=str)},
        "unasked_5xx_or_failures": findings(traffic.counts),
        "p99_ms_by_kind": lat,
        "processes_at_end": processes,
    }


def main() -> int:
    args = parse_args()
    from vmpool.export import export_zoo
    from vmpool.provisioners.local import free_port

    work = work_dir("tidegate-soak-")
    repo = work / "models"
    export_zoo(args.model, repo, size=(args.size, args.size))
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    port, grpc_port = free_port(), free_port()
    config = write_config(work, repo, port, grpc_port)
    log = work / "gateway.log"
    before = shm_roots()
    env = dict(kv.split("=", 1) for kv in args.gateway_env)
    gateway = start(gateway_command(args, config), log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/v2/health/ready", gateway, timeout_s=300)
        roots = shm_roots() - before  # made by this gateway (another's may slip in)
        grpc_url = f"127.0.0.1:{grpc_port}"
        doc = asyncio.run(drive(args, url, grpc_url, gateway.pid, work / "data", log, x, roots))
    finally:
        stop(gateway)
    doc["args"] = {k: str(v) for k, v in vars(args).items()}
    doc["gateway_exit"] = gateway.returncode
    print("\nslope per hour:", json.dumps(doc["slope_per_hour"], indent=None))
    print("per request:", json.dumps(doc["per_request"]))
    print("answers:", json.dumps(doc["by_status"]))
    print("unasked 5xx / failures:", json.dumps(doc["unasked_5xx_or_failures"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
