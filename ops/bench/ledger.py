"""Ledger throughput with a durable row per response (group commit) vs a commit per row.

Each simulated request awaits ``ledger.record(row)``, which returns only once the row is
committed (SQLite WAL with synchronous=FULL: fsync'd). Concurrency is the number of requests in
flight at once, as a gateway under load has. The baseline commits every row on its own, the
naive way to get the same durability. Target: >= 5,000 durable rows/s on SQLite.
Prints a table and writes JSON (ops/bench/results/ledger.json).

    python ops/bench/ledger.py                     # SQLite
    python ops/bench/ledger.py --postgres-url postgresql://postgres@127.0.0.1:5432/bench
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
from ops.bench.procs import work_dir  # noqa: E402

from gateway.ledger import Ledger, LedgerRow, make_backend  # noqa: E402
from gateway.ledger.row import COLUMNS  # noqa: E402


def _row(i: int) -> LedgerRow:
    return LedgerRow(
        id=f"bench-{i}",
        ts=time.time(),
        tenant=f"t{i % 8}",
        model="resnet18",
        path="vm" if i % 4 else "burst",
        status=200,
        latency_ms=12.5,
        workers=2,
        cold_starts=0,
        vm_cost_usd=1e-6,
        cost_usd=1e-6,
        reason="vm-has-capacity",
    )


async def group_commit(target: str, concurrency: int, seconds: float, synchronous: str) -> dict:
    ledger = Ledger(make_backend(target, sqlite_synchronous=synchronous))
    await ledger.start()
    counter = iter(range(10**12))
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await ledger.record(_row(next(counter)))
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await ledger.close()
    return {
        "mode": "group commit",
        "concurrency": concurrency,
        "rows": done,
        "rows_per_s": done / elapsed,
        "commits": ledger.commits,
        "rows_per_commit": done / max(1, ledger.commits),
    }


def commit_per_row(target: str, seconds: float, synchronous: str) -> dict:
    backend = make_backend(target, sqlite_synchronous=synchronous)
    backend.migrate()
    done, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        backend.write([tuple(getattr(_row(done), c) for c in COLUMNS)])
        done += 1
    elapsed = time.perf_counter() - t0
    backend.close()
    return {
        "mode": "commit per row",
        "concurrency": 1,
        "rows": done,
        "rows_per_s": done / elapsed,
        "commits": done,
        "rows_per_commit": 1.0,
    }


def bench(
    name: str, make_target, concurrencies: list[int], seconds: float, synchronous: str = "FULL"
) -> list[dict]:
    rows = [commit_per_row(make_target(), min(seconds, 2.0), synchronous)]
    for c in concurrencies:
        rows.append(asyncio.run(group_commit(make_target(), c, seconds, synchronous)))
    for r in rows:
        r["backend"] = name
        r["vs_commit_per_row"] = r["rows_per_s"] / rows[0]["rows_per_s"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--concurrency", default="1,16,256,1024", help="requests in flight")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    ap.add_argument(
        "--synchronous",
        default="full",
        choices=["full", "normal"],
        help="SQLite: full fsyncs each commit (the default); normal survives a "
        "process crash, not a power loss",
    )
    ap.add_argument("--postgres-url", help="also run against this (empty) PostgreSQL database")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/ledger.json")
    args = ap.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    tmp = work_dir("tidegate-ledger-bench-")
    runs = iter(range(1000))
    results = bench(
        "sqlite",
        lambda: str(tmp / f"ledger-{next(runs)}.sqlite"),
        concurrencies,
        args.seconds,
        args.synchronous.upper(),
    )
    if args.postgres_url:
        results += bench("postgresql", lambda: args.postgres_url, concurrencies, args.seconds)
    print(
        f"{'backend':<11} {'mode':<15} {'conc':>5} {'rows/s':>9} {'rows/commit':>12} "
        f"{'x per-row':>10}"
    )
    for r in results:
        print(
            f"{r['backend']:<11} {r['mode']:<15} {r['concurrency']:>5} {r['rows_per_s']:>9.0f} "
            f"{r['rows_per_commit']:>12.1f} {r['vs_commit_per_row']:>10.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(
        f"sqlite synchronous={args.synchronous}; load average {load:.1f} on "
        f"{os.cpu_count()} cores (commits are CPU- and fsync-bound: compare rows within a run)"
    )
    args.out.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "synchronous": args.synchronous,
                "load_average": load,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
