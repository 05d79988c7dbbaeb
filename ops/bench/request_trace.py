"""Why was one request slow? Per warm request of ``ops/bench/plan_accuracy.py``: when it ran,
its stages' compute, what the function runtime and instances spent on a core and waiting for
one, and what the rest of the machine did meanwhile (other processes' CPU, and the hypervisor's
steal time: this host is a VM on a shared machine).

A request slow because its functions computed longer with no more waiting and no steal ran on a
slower host (cache, memory bandwidth, a neighbour on the physical machine); one that waited
queued behind other work; one slow in a single stage points at that stage (a weight reload, a
cold instance)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from ops.bench import schedstat

USER_HZ = 100.0  # /proc/stat's unit (clock ticks), 100 on every Linux this runs on


@dataclass(frozen=True)
class HostTicks:
    busy_ms: float  # every CPU: user, nice, system, irq, softirq
    steal_ms: float  # time the hypervisor ran someone else on our vCPUs

    @staticmethod
    def now() -> "HostTicks":
        with open("/proc/stat") as f:
            parts = [float(v) for v in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = parts
        to_ms = 1000.0 / USER_HZ
        return HostTicks((user + nice + system + irq + softirq) * to_ms, steal * to_ms)


@dataclass(frozen=True)
class RequestTrace:
    at_s: float  # seconds since the model's first timed request
    total_ms: float
    master_wall_ms: float
    stage_compute_ms: list[float]
    fn_run_ms: float  # the runtime and its instances, on a core
    fn_wait_ms: float  # ... runnable, waiting for one
    others_busy_ms: float  # the machine's busy time not ours (this process's and its children's)
    steal_ms: float
    probe_ms: float = 0.0  # the host probe right after it (``ops.profile_drift``), CPU ms


class Tracer:
    """Snapshots around one request; ``done`` makes its ``RequestTrace``."""

    def __init__(self, origin_s: float) -> None:
        import os
        import time

        self._origin_s = origin_s
        self._t0 = time.perf_counter()
        self._sched = schedstat.snapshot()
        self._self_ms = _self_cpu_ms(os.getpid())
        self._host = HostTicks.now()

    def done(self, answer, probe=None) -> RequestTrace:
        import os

        spent = schedstat.delta(self._sched, schedstat.snapshot())
        host = HostTicks.now()
        probe_ms = probe.sample() if probe is not None else 0.0
        ours = spent.run_ms + _self_cpu_ms(os.getpid()) - self._self_ms
        report = answer.report
        return RequestTrace(
            at_s=self._t0 - self._origin_s,
            total_ms=answer.total_ms,
            master_wall_ms=report.wall_ms if report else 0.0,
            stage_compute_ms=[s.compute_ms for s in report.stages] if report else [],
            fn_run_ms=spent.run_ms,
            fn_wait_ms=spent.wait_ms,
            others_busy_ms=max(0.0, host.busy_ms - self._host.busy_ms - ours),
            steal_ms=host.steal_ms - self._host.steal_ms,
            probe_ms=probe_ms,
        )


def _self_cpu_ms(pid: int) -> float:
    return sum(r for r, _ in schedstat._process_times(pid).values()) / 1e6


def slow_vs_rest(traces: list[RequestTrace], slo_ms: float) -> dict:
    """Medians of each component over the requests above ``slo_ms`` and over the rest, and the
    stages that differ most: the evidence for why the slow ones were slow."""
    slow = [t for t in traces if t.total_ms > slo_ms]
    rest = [t for t in traces if t.total_ms <= slo_ms]
    if not slow or not rest:
        return {"slow": len(slow), "rest": len(rest)}

    def med(ts: list[RequestTrace], name: str) -> float:
        return statistics.median(getattr(t, name) for t in ts)

    names = ["total_ms", "fn_run_ms", "fn_wait_ms", "others_busy_ms", "steal_ms", "probe_ms"]
    stages = min(len(t.stage_compute_ms) for t in traces)
    per_stage = [
        (
            statistics.median(t.stage_compute_ms[i] for t in slow),
            statistics.median(t.stage_compute_ms[i] for t in rest),
        )
        for i in range(stages)
    ]
    return {
        "slow": len(slow),
        "rest": len(rest),
        "slow_at_s": [round(t.at_s, 1) for t in slow],
        **{f"{n}_slow_vs_rest": (med(slow, n), med(rest, n)) for n in names},
        "stage_compute_ms_slow_vs_rest": per_stage,
    }


def format_evidence(ev: dict) -> str:
    if "total_ms_slow_vs_rest" not in ev:
        return f"    over-SLO requests: {ev['slow']} (nothing to compare)"
    lines = [f"    {ev['slow']} over-SLO requests at {ev['slow_at_s']} s; medians slow / rest:"]
    for key, value in ev.items():
        if key.endswith("_slow_vs_rest") and key != "stage_compute_ms_slow_vs_rest":
            s, r = value
            lines.append(f"      {key[: -len('_slow_vs_rest')]:<15} {s:8.1f} {r:8.1f}")
    stages = " ".join(f"{s:.0f}/{r:.0f}" for s, r in ev["stage_compute_ms_slow_vs_rest"])
    lines.append(f"      stage compute ms (slow/rest): {stages}")
    return "\n".join(lines)


def as_json(traces: list[RequestTrace]) -> list[dict]:
    return [asdict(t) for t in traces]


def format_probes(rows: list[dict]) -> str:
    """The host probe's median per plan of a model: the host's pace while each was measured."""
    probes = {r["plan"]: statistics.median(t["probe_ms"] for t in r["requests"]) for r in rows}
    return "  host probe p50 (CPU ms) per plan: " + ", ".join(
        f"{k} {v:.1f}" for k, v in probes.items()
    )
