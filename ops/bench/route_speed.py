"""How long one routing decision takes: ``route(request, live_state)`` for every policy, and the
live snapshot the gateway builds for it (cached parts refreshed every 0.25 s, as in serving).

    python ops/bench/route_speed.py [--n 200000] [--json ops/bench/results/route_speed.json]

Target (issue 8): under 50 microseconds per decision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from policies.routing import POLICIES, make_policy  # noqa: E402
from policies.state import (  # noqa: E402
    BurstState,
    LatencyQuantiles,
    LiveState,
    ModelStats,  # noqa: E402
    RouteRequest,
    VmState,
)

TARGET_US = 50.0


def busy_state() -> LiveState:
    """A loaded gateway: 4 replicas with queues, burst history, observed latencies."""
    vm = VmState(
        4,
        1,
        37,
        max_batch_size=8,
        desired_replicas=5,
        outstanding_per_replica=(8, 9, 10, 10),
        boot_remaining_s=7.5,
        boot_s=20.0,
    )
    stats = ModelStats(
        arrival_rate_short_per_s=180.0,
        arrival_rate_long_per_s=60.0,
        vm_service_ms_by_batch=((1, 52.0), (4, 68.0), (8, 91.0)),
        vm_latency=LatencyQuantiles(60.0, 110.0, 190.0, 4000),
        burst_latency=LatencyQuantiles(140.0, 210.0, 400.0, 900),
        slo_ms=360.0,
    )
    return LiveState(
        1000.0,
        vm,
        True,
        BurstState(in_flight=6, warm_instances=40, free_concurrency=10),
        {"delay": stats},
        180.0,
        60.0,
    )


def onset_states() -> dict[str, LiveState]:
    """Where no path meets the SLO (slo-aware's slowest branch): a burst onset on one replica
    with no warm function, its queue missing the SLO at the p99 but not at the median, then
    missing even at the median (vm-saturated)."""
    busy = busy_state()
    stats = busy.models["delay"]
    cold = BurstState(in_flight=0, warm_instances=0, free_concurrency=64, cold_start_ms=900.0)
    out = {}
    for label, rows in (("no path meets, VM at a lower quantile", 24), ("vm saturated", 60)):
        vm = VmState(1, 0, rows, max_batch_size=8, outstanding_per_replica=(rows,), boot_s=20.0)
        out[label] = LiveState(1000.0, vm, True, cold, {"delay": stats}, 400.0, 30.0)
    # the slowest: warm functions whose p99 misses but p90 meets, the VM meeting it only lower
    # down (every fallback quantile of both paths predicted)
    vm = VmState(1, 0, 24, max_batch_size=8, outstanding_per_replica=(24,), boot_s=20.0)
    out["both meet at lower quantiles"] = LiveState(
        1000.0, vm, True, busy.burst, {"delay": stats}, 400.0, 30.0
    )
    return out


def time_per_call_us(fn, n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(5):  # the best of five rounds: the machine is shared
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def snapshot_cost_us(n: int) -> float:
    """The gateway's LiveCollector.snapshot over an in-memory pool (no network)."""
    import asyncio

    from gateway.live import LiveCollector
    from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
    from vmpool.pool import ReplicaPool

    async def go() -> float:
        prov = FakeProvisioner()
        pool = ReplicaPool(prov, FakeClient())
        await pool.scale_to(4)
        prov.boot_all()
        live = LiveCollector(
            pool=pool, burst=object(), model_slos_ms={"delay": 360.0}, burst_concurrency=64
        )
        for i in range(2000):
            live.on_arrival("delay")
            live.on_vm_answer("delay", 1, 50.0 + i % 40, i % 5)
        return time_per_call_us(live.snapshot, n)

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--json", default=str(ROOT / "ops/bench/results/route_speed.json"))
    args = ap.parse_args(argv)
    state = busy_state()
    request = RouteRequest("t", "delay", 1, 360.0)
    rows: list[dict] = []
    for name in POLICIES:
        policy = make_policy(name)
        us = time_per_call_us(lambda p=policy: p.route(request, state), args.n)
        rows.append({"what": f"route() {name}", "us": us})
    slo_aware = make_policy("slo-aware")
    for label, onset in onset_states().items():
        us = time_per_call_us(lambda s=onset: slo_aware.route(request, s), args.n)
        reason = slo_aware.route(request, onset).reason.value
        rows.append({"what": f"route() slo-aware, {label} ({reason})", "us": us})
    rows.append({"what": "LiveCollector.snapshot()", "us": snapshot_cost_us(args.n // 10)})
    slo = max(r["us"] for r in rows if r["what"].startswith("route() slo-aware"))
    typical = next(r["us"] for r in rows if r["what"] == "route() slo-aware")
    snap = rows[-1]["us"]
    rows.append({"what": "slo-aware typical decision incl. snapshot", "us": typical + snap})
    rows.append({"what": "slo-aware slowest decision incl. snapshot", "us": slo + snap})
    print(f"{'what':<72} {'us/call':>9}")
    for r in rows:
        print(f"{r['what']:<72} {r['us']:>9.2f}")
    # the target is route()'s (issue 8); the snapshot is the gateway's, shown beside it
    ok = slo < TARGET_US
    print(f"slowest slo-aware route() {slo:.1f} us; target < {TARGET_US:g} us: ", end="")
    print("PASS" if ok else "FAIL")
    for label, us in (("typical", typical + snap), ("slowest", slo + snap)):
        print(f"  {label} route() + snapshot {us:.1f} us: {'PASS' if us < TARGET_US else 'FAIL'}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "target_us": TARGET_US, "pass": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
