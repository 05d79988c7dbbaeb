"""The live control loop beside the simulated one, tick by tick (``sim_vs_real``'s diagnosis).

The bench's replay gateway records every tick (``TIDEGATE_CONTROL_LOG``, ``gateway/
control_log.py``) into ``control_live.jsonl``. This replays those snapshots through a fresh
scaler built from the run's config (does the live loop decide what its policy says, given what
it read?), runs the simulation of the run in-process recording its ticks the same way, and
prints both per phase: what the scaler read (VM outstanding, burst requests in flight) and what
it kept (replica-seconds).

A run of several models (``sim_vs_real.py --models delay=20/3,delay_b=60/4``) is simulated as
the bench does, on the shared fleet (``ops/sim/shared.py``: one fleet, one scaler, the models'
functions lent between them), and its ticks recorded the same way. A record that holds every
field the scalers read (``tick_record`` since session 25) is replayed through any scaler
(``gateway.control_log.state_of_record``); older records only through those that read the
fields they hold (``REPLAYABLE``).

    .venv/bin/python ops/bench/sim_vs_real_ticks.py RUN_DIR [--every-s 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.control_log import read_records, state_of_record, tick_record  # noqa: E402
from policies.state import BurstState, LiveState, VmState  # noqa: E402

LIVE_FILE = "control_live.jsonl"
# scalers that read only what a record holds (in flight, replicas, the arrival rate, the clock)
REPLAYABLE = ("none", "target", "knative")


def state_of(record: dict) -> LiveState:
    """The snapshot a record describes, in the fields the scalers read."""
    vm = VmState(
        ready_replicas=record["ready"],
        booting_replicas=record["booting"],
        outstanding=record["vm_outstanding"],
        desired_replicas=record["desired"],
        outstanding_per_replica=tuple(record["per_replica"]),
        boot_s=record.get("boot_s", 60.0),
        draining_replicas=record["draining"],
    )
    rate = record["arrival_rate_per_s"]
    return LiveState(
        now_s=record["now_s"],
        vm=vm,
        burst_enabled=True,
        burst=BurstState(in_flight=record["burst_in_flight"]),
        arrival_rate_short_per_s=rate,
        arrival_rate_long_per_s=rate,
    )


def full_record(record: dict) -> bool:
    """Does ``record`` hold every field the scalers read (``state_of_record`` reads it back)?"""
    return "models" in record and "burst" in record


def replay(records: list[dict], scaler) -> list[tuple[dict, int]]:
    """Feed the recorded snapshots to ``scaler`` in order; the records whose decision it does
    not repeat, with what it decided instead."""
    out = []
    for record in records:
        state = state_of_record(record) if full_record(record) else state_of(record)
        replicas = scaler.decide(state).replicas
        if replicas != record["replicas"]:
            out.append((record, replicas))
    return out


def scaler_of(work: Path):
    from gateway.settings import Settings

    settings = Settings.load(work / "tidegate.toml")
    return settings.autoscaling.build(settings.vm.replicas)


class _Recording:
    """An autoscaler that records each tick (``tick_record``) and decides as ``inner``."""

    def __init__(self, inner, records: list[dict]):
        self._inner, self._records = inner, records

    def decide(self, state):
        decision = self._inner.decide(state)
        self._records.append(tick_record(state, decision))
        return decision

    def __getattr__(self, name):
        return getattr(self._inner, name)


def simulated_records(work: Path, model: str | None) -> list[dict]:
    """Simulate the run as ``sim_vs_real`` does (``simulate --policy config`` with its
    ``sim.toml``; ``model`` None: the trace's models on the shared fleet), recording every
    tick."""
    from ops.cli import build_parser
    from ops.commands.simulate import load_inputs
    from ops.sim import spec_simulation

    argv = ["simulate", "--trace", str(work / "trace.csv"), "--policy", "config"]
    argv += ["--config", str(work / "sim.toml"), "--repo", str(work / "repo")]
    argv += ["--fleet", "shared"] if model is None else ["--model", model]
    args = build_parser("simulate", argv).parse_args(argv)
    trace, profile, cfg = load_inputs(args, several_models=model is None)
    if model is None:
        return _shared_records(trace, profile, cfg, args.seed)
    sim = spec_simulation(
        trace,
        cfg.spec,
        profile,
        name="config",
        tick_s=cfg.tick_s,
        slo_ms_by_tenant=cfg.slo_ms_by_tenant,
        seed=args.seed,
        async_setup=cfg.async_setup,
    )
    records: list[dict] = []
    sim.s.autoscaler = _Recording(sim.s.autoscaler, records)
    sim.run()
    return records


def _shared_records(trace, profiles: dict, cfg, seed: int) -> list[dict]:
    """The shared-fleet simulation ``simulate --fleet shared --policy config`` runs
    (``shared_run.run_shared_spec``), its scaler recording every tick."""
    from ops.sim.presets import build_policies
    from ops.sim.shared import SharedSetup, SharedSimulation
    from policies.costs import PriceTable

    prices = PriceTable()
    routing, scaler = build_policies(cfg.spec, prices)
    records: list[dict] = []
    setup = SharedSetup(
        profiles=[profiles[m] for m in trace.models],
        routing=routing,
        autoscaler=_Recording(scaler, records),
        prices=prices,
        initial_replicas=cfg.spec.initial_replicas,
        tick_s=cfg.tick_s,
        slo_ms_by_tenant=cfg.slo_ms_by_tenant,
        seed=seed,
        name="config",
    )
    SharedSimulation(trace, setup).run()
    return records


def from_traffic(records: list[dict]) -> list[dict]:
    """The ticks from the first that saw an arrival: the live gateway ticks from its start,
    some seconds before the replay's first request, the simulation from that request (the
    two line up within a tick)."""
    first = next((i for i, r in enumerate(records) if r["arrival_rate_per_s"] > 0), None)
    return records[first:] if first is not None else []


def phases(records: list[dict], every_s: float) -> dict[int, dict]:
    """Per ``every_s`` from the first tick that saw traffic: mean VM outstanding and burst
    requests in flight as the scaler read them, replica-seconds held (ready + booting) and
    the decisions."""
    records = from_traffic(records)
    if not records:
        return {}
    t0 = records[0]["now_s"]
    out: dict[int, dict] = {}
    for prev, rec in zip(records, records[1:] + [None], strict=True):
        k = int((prev["now_s"] - t0) // every_s)
        p = out.setdefault(k, {"n": 0, "vm": 0.0, "burst": 0.0, "replica_s": 0.0, "to": []})
        p["n"] += 1
        p["vm"] += prev["vm_outstanding"]
        p["burst"] += prev["burst_in_flight"]
        dt = (rec["now_s"] - prev["now_s"]) if rec is not None else 0.0
        p["replica_s"] += (prev["ready"] + prev["booting"]) * dt
        if not p["to"] or p["to"][-1] != prev["replicas"]:
            p["to"].append(prev["replicas"])
    return out


def print_phases(live: list[dict], sim: list[dict], every_s: float) -> None:
    a, b = phases(live, every_s), phases(sim, every_s)
    print(
        f"{'from s':>6} | {'live vm':>7} {'burst':>6} {'rep-s':>6} replicas | "
        f"{'sim vm':>6} {'burst':>6} {'rep-s':>6} replicas"
    )
    for k in sorted(set(a) | set(b)):
        cells = []
        for p in (a.get(k), b.get(k)):
            if p is None:
                cells.append(f"{'-':>7} {'-':>6} {'-':>6} {'-':<8}")
                continue
            n = max(p["n"], 1)
            to = "->".join(str(r) for r in p["to"])
            cells.append(
                f"{p['vm'] / n:>7.2f} {p['burst'] / n:>6.2f} {p['replica_s']:>6.0f} {to:<8}"
            )
        print(f"{k * every_s:>6.0f} | {cells[0]} | {cells[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a sim_vs_real run's directory (its scratch directory)")
    parser.add_argument("--every-s", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(args.run)
    if not (work / LIVE_FILE).is_file():
        print(
            f"sim_vs_real_ticks: no {work / LIVE_FILE} (a run before the record)", file=sys.stderr
        )
        return 2
    kept = json.loads((work / "bench_args.json").read_text())
    model = None if kept.get("models") else kept["model"]  # several: the shared fleet
    live = read_records(work / LIVE_FILE)
    scaler = scaler_of(work)
    full = bool(live) and all(full_record(r) for r in live)
    if scaler.name not in REPLAYABLE and not full:  # it reads what the record does not hold
        print(f"live ticks: {len(live)}; the {scaler.name} scaler is not replayed (reads more)")
    else:
        wrong = replay(live, scaler)
        print(
            f"live ticks: {len(live)}; the scaler replayed on them decides otherwise on {len(wrong)}"
        )
        for rec, replicas in wrong[:10]:
            print(
                f"  t={rec['now_s']:.2f}: live {rec['replicas']} ({rec['reason']}), replay {replicas}"
            )
    print_phases(live, simulated_records(work, model), args.every_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
