"""Rate-limit exactness: 1,000 req/s offered for 10 s to a tenant limited to 500 req/s.

A token bucket of rate R and size B admits B + R * T requests over T seconds when offered
more than R. Two runs per limiter (per process, and Redis shared by two gateway replicas):
- injected clock: requests at exactly 1 ms steps; the count must be exact;
- real time: requests paced by the wall clock on the event loop; expected from the times the
  limiter itself saw. Target: within 1 %.
Prints a table and writes JSON (ops/bench/results/ratelimit.json).

    python ops/bench/ratelimit.py [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.errors import TooManyRequests  # noqa: E402
from gateway.tenants import LocalLimits, TenantRegistry, TenantSettings  # noqa: E402


class SteppedClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _replicas(make_limits, clock, rate: float, burst: int, count: int) -> list[TenantRegistry]:
    tenant = TenantSettings(name="acme", api_keys=["k"], rate_per_s=rate, burst=burst)
    return [TenantRegistry([tenant], limits=make_limits(), clock=clock) for _ in range(count)]


async def _offer(replicas, clock, offered_per_s: float, seconds: float, stepped: bool) -> dict:
    tenants = [r.authenticate(None, "k") for r in replicas]
    seen = []
    start = clock()
    total = int(offered_per_s * seconds)

    arrivals = []

    async def one(replica: int) -> bool:
        arrivals.append(clock())
        try:
            await replicas[replica].admit(tenants[replica])
            return True
        except TooManyRequests:
            return False

    pending = []
    for i in range(total):
        if stepped:
            clock.t = start + i / offered_per_s
        else:  # wait for the request's slot on the wall clock
            delay = start + i / offered_per_s - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        seen.append(clock())
        # requests alternate between the gateway replicas and do not wait for one another,
        # as clients do not: the offered rate holds even when a round trip takes over 1 ms
        task = asyncio.ensure_future(one(i % len(replicas)))
        if stepped:
            await task  # the clock moves only between requests
        pending.append(task)
    admitted = sum(await asyncio.gather(*pending))
    for r in replicas:
        await r.close()
    return {
        "offered": total,
        "admitted": admitted,
        "arrivals": sorted(arrivals),
        "span_s": seen[-1] - seen[0],
        "behind_s": max(0.0, seen[-1] - (start + (total - 1) / offered_per_s)),
    }


def _replica_process(
    url: str,
    prefix: str,
    rate: float,
    burst: int,
    offered: float,
    seconds: float,
    start_at: float,
    index: int,
    count: int,
) -> dict:
    """One gateway replica in its own process: it offers every ``count``-th request slot."""
    from gateway.tenants.redis_limits import RedisLimits

    async def go() -> dict:
        (registry,) = _replicas(
            lambda: RedisLimits(url, prefix=prefix, timeout_s=2.0), time.time, rate, burst, 1
        )
        tenant = registry.authenticate(None, "k")
        await registry.limits._client.execute("PING")  # connect before the clock starts

        arrivals = []  # the times the limiter was asked at (the reference bucket replays them)

        async def one() -> bool:
            arrivals.append(time.time())
            try:
                await registry.admit(tenant)
                return True
            except TooManyRequests:
                return False

        pending, seen = [], []
        for slot in range(index, int(offered * seconds), count):
            delay = start_at + slot / offered - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            seen.append(time.time())
            pending.append(asyncio.ensure_future(one()))
        admitted = sum(await asyncio.gather(*pending))
        failures = registry.limits.failures
        await registry.close()
        return {
            "offered": len(seen),
            "admitted": admitted,
            "arrivals": arrivals,
            "behind_s": max(
                0.0, seen[-1] - (start_at + (int(offered * seconds) - count + index) / offered)
            ),
            "limiter_failures": failures,
        }

    return asyncio.run(go())


def _ideal_bucket(arrivals: list[float], rate: float, size: float) -> int:
    """How many of these arrivals an exact token bucket admits (the reference)."""
    tokens, last, admitted = size, arrivals[0], 0
    for t in arrivals:
        tokens, last = min(size, tokens + (t - last) * rate), t
        if tokens >= 1.0:
            tokens -= 1.0
            admitted += 1
    return admitted


def run_shared_real_time(
    url: str, replicas: int, rate: float, burst: int, offered: float, seconds: float
) -> dict:
    """Replicas as separate processes sharing one Redis bucket, on the wall clock."""
    import multiprocessing
    import uuid
    from concurrent.futures import ProcessPoolExecutor

    prefix, start_at = uuid.uuid4().hex, time.time() + 6.0  # all start at the same instant
    with ProcessPoolExecutor(replicas, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = [
            ex.submit(
                _replica_process, url, prefix, rate, burst, offered, seconds, start_at, i, replicas
            )
            for i in range(replicas)
        ]
        parts = [f.result() for f in futures]
    arrivals = sorted(t for p in parts for t in p["arrivals"])
    result = {
        "offered": sum(p["offered"] for p in parts),
        "admitted": sum(p["admitted"] for p in parts),
        "span_s": arrivals[-1] - arrivals[0],
        "behind_s": max(p["behind_s"] for p in parts),
        "limiter_failures": sum(p["limiter_failures"] for p in parts),
    }
    expected = _ideal_bucket(arrivals, rate, burst)
    result.update(
        limiter="redis",
        replicas=replicas,
        clock="real",
        expected=expected,
        error_pct=100.0 * (result["admitted"] - expected) / expected,
    )
    return result


def run(
    name: str,
    limits_for_run,
    replicas: int,
    rate: float,
    burst: int,
    offered: float,
    seconds: float,
    real_time: bool = True,
) -> list[dict]:
    """``limits_for_run()`` gives, per run, the factory each replica calls for its limits."""
    rows = []
    for stepped in (True, False) if real_time else (True,):
        clock = SteppedClock(1_800_000_000.0) if stepped else time.time
        make_limits = limits_for_run()
        result = asyncio.run(
            _offer(
                _replicas(make_limits, clock, rate, burst, replicas),
                clock,
                offered,
                seconds,
                stepped,
            )
        )
        expected = _ideal_bucket(result.pop("arrivals"), rate, burst)
        result.update(
            limiter=name,
            replicas=replicas,
            clock="injected" if stepped else "real",
            expected=expected,
            error_pct=100.0 * (result["admitted"] - expected) / expected,
        )
        rows.append(result)
    return rows


def _start_redis():
    from ops.local_redis import redis_binary, start_redis

    return start_redis() if redis_binary() is not None else None


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=500.0, help="the tenant's limit, req/s")
    ap.add_argument("--burst", type=int, default=50, help="the tenant's bucket size")
    ap.add_argument("--offered", type=float, default=1000.0, help="offered load, req/s")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--redis-url", help="default: start a redis-server on a free port if installed")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/ratelimit.json")
    return ap.parse_args()


def run_redis(url: str, args: argparse.Namespace) -> list[dict]:
    """The shared (Redis) limiter across two replicas: stepped clock, then real time."""
    import uuid

    from gateway.tenants.redis_limits import RedisLimits

    def shared_store():  # per run: a fresh key prefix that both replicas share
        prefix = uuid.uuid4().hex
        return lambda: RedisLimits(url, prefix=prefix)

    load = (args.rate, args.burst, args.offered, args.seconds)
    rows = run("redis", shared_store, 2, *load, real_time=False)
    rows.append(run_shared_real_time(url, 2, *load))
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"limit {args.rate:g} req/s, bucket {args.burst}, offered {args.offered:g} req/s "
        f"for {args.seconds:g} s"
    )
    print(
        f"{'limiter':<12} {'replicas':>8} {'clock':<9} {'offered':>8} {'admitted':>9} "
        f"{'expected':>9} {'error %':>8} {'behind s':>8} {'failures':>8}"
    )
    for r in rows:
        print(
            f"{r['limiter']:<12} {r['replicas']:>8} {r['clock']:<9} {r['offered']:>8} "
            f"{r['admitted']:>9} {r['expected']:>9.1f} {r['error_pct']:>8.3f} "
            f"{r['behind_s']:>8.3f} {r.get('limiter_failures', 0):>8}"
        )


def write_json(rows: list[dict], args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rate_per_s": args.rate,
                "burst": args.burst,
                "offered_per_s": args.offered,
                "seconds": args.seconds,
                "load_average": os.getloadavg()[0],
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


def main() -> int:
    args = parse_args()
    rows = run(
        "per process", lambda: LocalLimits, 1, args.rate, args.burst, args.offered, args.seconds
    )
    server = None if args.redis_url else _start_redis()
    url = args.redis_url or (server.url if server is not None else None)
    try:
        if url:
            rows += run_redis(url, args)
        else:
            print("redis-server not installed: the shared limiter is not measured")
    finally:
        if server is not None:
            server.stop()
    print_table(rows, args)
    write_json(rows, args)
    worst = max(abs(r["error_pct"]) for r in rows)
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
