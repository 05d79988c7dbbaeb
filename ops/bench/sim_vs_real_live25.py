"""Does the live scaler decide what its policy says, given what it read? (any policy)

Replays a kept sim-vs-real run's control record (``control_live.jsonl``, ``TIDEGATE_BENCH_KEEP=1``)
through a fresh autoscaler built from the run's ``tidegate.toml``, each tick's snapshot read back
with ``gateway.control_log.state_of_record``, and prints the live decisions in trace time (the
offset fitted on the recorded rates against the trace's exact 10 s counts) beside the replay's.

    .venv/bin/python ops/bench/sim_vs_real_live25.py RUN_DIR [--workers N]

``--workers N`` replays with the burst path's workers set to N (what the scaler's spill price
reads): how one input moves the decisions.

It also prints the spread of the fleet sizing rate the predictive scaler read (a replica's rate
by the learnt batch-time curves, mixed over the models' arrivals), and of the same with every
model's curve held at its last value: the difference is what the curves' noise added (on a
loaded host, session 25's run 4 moved 72-81 req/s tick to tick; the simulator's fixed profile
79-81).
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


def sizing_spread(records: list[dict], utilization: float) -> dict[str, dict[str, float]]:
    """Range and tick-to-tick change of the fleet sizing rate (``slo_capacity``), as read
    (``live``) and with each model's batch-time curve held at its last (``curves held``), over
    the ticks where every model has a curve with a full batch's point and traffic arrives."""
    from policies.autoscaling.slo_capacity import fleet_sizing_rate_per_s

    states = [state_of_record(r) for r in records]
    batch = records[-1]["max_batch"] if records else 8
    states = [
        s
        for s in states
        if s.arrival_rate_short_per_s > 0
        and all(
            max((b for b, _ in m.vm_service_ms_by_batch), default=0) >= batch
            for m in s.models.values()
        )
    ]
    if not states:
        return {}
    last = {name: m.vm_service_ms_by_batch for name, m in states[-1].models.items()}

    def rate(state, held: bool) -> float:
        models = [
            dataclasses.replace(m, vm_service_ms_by_batch=last[name]) if held else m
            for name, m in state.models.items()
        ]
        return fleet_sizing_rate_per_s(models, batch, utilization)

    out = {}
    for label, held in (("live", False), ("curves held", True)):
        rates = [rate(s, held) for s in states]
        steps = sorted(abs(b - a) for a, b in zip(rates, rates[1:])) or [0.0]
        out[label] = {
            "ticks": len(rates),
            "min": min(rates),
            "max": max(rates),
            "step_p50": steps[len(steps) // 2],
            "step_p90": steps[int(0.9 * (len(steps) - 1))],
            "step_max": steps[-1],
        }
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
    utilization = getattr(scaler, "target_utilization", None)
    for label, d in sizing_spread(records, utilization or 1.0).items():
        print(
            f"sizing rate ({label}): {d['min']:.1f}-{d['max']:.1f} req/s over {d['ticks']} "
            f"ticks; tick to tick median {d['step_p50']:.2f}, p90 {d['step_p90']:.2f}, "
            f"max {d['step_max']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
