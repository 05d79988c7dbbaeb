"""Does the live scaler decide what its policy says, given what it read? (any policy)

Replays a kept sim-vs-real run's control record (``control_live.jsonl``, ``TIDEGATE_BENCH_KEEP=1``)
through a fresh autoscaler built from the run's ``tidegate.toml``, each tick's snapshot read back
with ``gateway.control_log.state_of_record``, and prints the live decisions in trace time (the
offset fitted on the recorded rates against the trace's exact 10 s counts) beside the replay's.

    .venv/bin/python ops/bench/sim_vs_real_live25.py RUN_DIR [--workers N]

``--workers N`` replays with the burst path's workers set to N (what the scaler's spill price
reads): how one input moves the decisions.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.control_log import read_records, state_of_record  # noqa: E402

WINDOW_S = 10.0  # the collector's short window


def trace_offset_s(records: list[dict], arrivals: list[float]) -> float:
    """The record's time of the trace's start: where the recorded rates best fit the trace's."""

    def rate(t: float) -> float:
        return (bisect.bisect_right(arrivals, t) - bisect.bisect_right(arrivals, t - WINDOW_S)) / 10

    t0 = records[0]["now_s"]
    fits = (
        (sum((rate(r["now_s"] - t0 - o) - r["arrival_rate_per_s"]) ** 2 for r in records), o)
        for o in (k / 20 for k in range(0, 20 * 120))
    )
    return t0 + min(fits)[1]


def replay(records: list[dict], scaler, workers: int | None = None) -> list[tuple[dict, object]]:
    out = []
    for record in records:
        state = state_of_record(record)
        if workers is not None:
            state = dataclasses.replace(
                state, burst=dataclasses.replace(state.burst, default_workers=workers)
            )
        out.append((record, scaler.decide(state)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    from gateway.settings import Settings

    records = read_records(args.run_dir / "control_live.jsonl")
    if not records or "burst" not in records[0]:
        print("the record predates state_of_record (session 25): nothing to replay")
        return 2
    settings = Settings.load(args.run_dir / "tidegate.toml")
    scaler = settings.autoscaling.build(settings.vm.replicas)
    with open(args.run_dir / "trace.csv", newline="") as f:
        arrivals = sorted(float(row["timestamp_s"]) for row in csv.DictReader(f))
    start = trace_offset_s(records, arrivals)
    differ, last = 0, None
    for record, decision in replay(records, scaler, args.workers):
        differ += decision.replicas != record["replicas"]
        key = (record["replicas"], record["reason"], decision.replicas, decision.reason)
        if key != last:
            print(
                f"{record['now_s'] - start:7.1f} s  live -> {record['replicas']} "
                f"({record['reason']})  replay -> {decision.replicas} ({decision.reason})"
            )
        last = key
    print(f"{differ} of {len(records)} ticks replay to another fleet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
