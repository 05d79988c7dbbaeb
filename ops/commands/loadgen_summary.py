"""``tidegate loadgen``'s summary (the simulator's keys, measured), its exit status, and its
progress lines when stderr is not a terminal."""

from __future__ import annotations

import math
import sys


def judge_by_model(args, model, model_slos: dict) -> tuple:
    """``(slo_of, keys)``: without --slo-ms each request is judged by its model's slo_ms (as the
    gateway's metadata states it, ``model_slos``; else ``FALLBACK_SLO_MS``), as simulate and
    report judge (it judged every one by 300 ms); ``keys`` for the summary. With --slo-ms:
    ``(None, {})``."""
    if args.slo_ms is not None:
        return None, {}
    from ops.commands.loadgen import FALLBACK_SLO_MS

    names = [model] if isinstance(model, str) else sorted(set(model))
    judged = {name: model_slos.get(name, FALLBACK_SLO_MS) for name in names}

    def slo_of(r) -> float:  # a request's SLO when its tenant has none of its own
        return judged[model if isinstance(model, str) else model[r.index]]

    one = judged[names[0]] if len(set(judged.values())) == 1 else None
    return slo_of, {"slo_ms": one, "slo_ms_by_model": judged}


def summarize(
    results, wall_s: float, fleet: dict, args, trace, model: str, ended: str = "", slo_of=None
) -> dict:
    """The simulator's JSON keys, measured (``failures``: requests with no HTTP answer, by why;
    ``unfinished``: not sent or dropped); ``slo_of(r)``: r's SLO if its tenant has none."""
    import numpy as np

    from ops.commands.loadgen import tenant_deadlines_ms, tenant_slos
    from policies.costs import PriceTable

    vm_price = args.vm_usd_per_hour or PriceTable().vm_usd_per_hour
    lat = np.array([r.latency_ms for r in results])
    ok = np.array([200 <= r.status < 300 for r in results], dtype=bool)
    slos = tenant_slos(args.config)  # a tenant's own SLO, else --slo-ms
    deadlines = tenant_deadlines_ms(args.config)  # a queued request's: its tenant's deadline
    slo_of = slo_of or _fixed(args.slo_ms)  # (--slo-ms given)
    limit = np.array([_limit(r, slos, deadlines, slo_of) for r in results], dtype=float)
    met = ok & (lat <= limit)
    queued = np.array([r.queued for r in results], dtype=bool)
    burst_usd = sum((r.cost_usd for r in results if r.path == "burst"), 0.0)
    vm_usd = fleet["vm_s"] * vm_price / 3600.0
    billed_s = (fleet["billed_end"] or 0.0) - (fleet["billed_start"] or 0.0)
    statuses, failures = _tallies(results)
    n = len(results)
    # trace seconds replayed: the wall time at the trace's pace, the drain after the last send
    # at the wall's (a huge --speedup sends everything at once: the trace, not wall x 1e300)
    covered_s = min(wall_s * args.speedup, trace.duration_s + wall_s)
    return {
        "policy": "live",
        "trace": trace.name,
        "model": model,
        "requests": n,
        "duration_s": round(covered_s, 3),
        "wall_s": round(wall_s, 3),
        "slo_ms": args.slo_ms,
        "slo_attainment": float(met.mean()) if n else 1.0,
        "p50_ms": float(np.percentile(lat[ok], 50)) if ok.any() else None,
        "p99_ms": float(np.percentile(lat[ok], 99)) if ok.any() else None,
        "cost_usd": vm_usd + burst_usd,
        "cost_per_1k_usd": (vm_usd + burst_usd) / n * 1000.0 if n else 0.0,
        "vm_usd": vm_usd,
        "burst_usd": burst_usd,
        "attributed_cost_usd": sum(r.cost_usd for r in results),
        "vm_hours": fleet["vm_s"] / 3600.0,
        "function_gb_s": billed_s * args.fn_memory_mb / 1024.0,
        "cold_starts": sum(r.cold_starts for r in results),
        "requests_vm": sum(1 for r in results if r.path == "vm"),
        "requests_burst": sum(1 for r in results if r.path == "burst"),
        "rejected": int((~ok).sum()),
        "requests_queued": int(queued.sum()),
        "queued_slo_attainment": float(met[queued].mean()) if queued.any() else None,
        "spill_ratio": (sum(1 for r in results if r.path == "burst") / n) if n else 0.0,
        "peak_vm_replicas": fleet["peak"],
        "vm_replicas_timeline": fleet["timeline"],
        "statuses": statuses,
        "failures": failures,
        "unfinished": len(trace) - n,
        "stopped": ended or None,
        "tenants": _tenants(results, slo_of, slos, vm_usd, deadlines),
    }


def _fixed(slo_ms: float):
    return lambda r: slo_ms


def _limit(r, slos: dict[str, float], deadlines: dict[str, float], slo_of) -> float:
    if r.queued:
        return deadlines.get(r.tenant, slos.get(r.tenant) or slo_of(r))
    return slos.get(r.tenant) or slo_of(r)


def _tallies(results) -> tuple[dict[str, int], dict[str, int]]:
    """Answers by HTTP status, and those with none by why."""
    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        if r.status == 0:
            failures[r.error or "no answer"] = failures.get(r.error or "no answer", 0) + 1
    return statuses, failures


def _vm_shares(results, names: list[str]) -> dict[str, float]:
    """Each tenant's share of the VM fleet's bill, by the rule the simulator and ``tidegate
    report`` use (share of VM busy time): the VM-path costs the gateway attributed to its
    requests (each one's share of its batch's service time), else its VM-path requests, else
    (a fleet that served nothing) its requests."""
    for weight in (
        lambda r: r.cost_usd if r.path == "vm" else 0.0,
        lambda r: 1.0 if r.path == "vm" else 0.0,
        lambda r: 1.0,
    ):
        by_tenant = {name: 0.0 for name in names}
        for r in results:
            by_tenant[r.tenant] += weight(r)
        total = sum(by_tenant.values())
        if total > 0:
            return {name: w / total for name, w in by_tenant.items()}
    return {name: 0.0 for name in names}


def _tenants(results, slo_of, slos: dict[str, float], vm_usd: float = 0.0, deadlines=None) -> dict:
    """Per tenant: requests, attainment, p99 and cost, the costs summing to ``cost_usd`` (the
    fleet's measured bill split by ``_vm_shares``, plus its own burst requests' bills); the
    gateway's per-request figures are ``attributed_cost_usd``."""
    import numpy as np

    deadlines = deadlines or {}

    tenants = {}
    names = sorted({r.tenant for r in results})
    shares = _vm_shares(results, names)
    by_tenant: dict[str, list] = {name: [] for name in names}
    for r in results:  # (one pass: a scan per tenant was O(requests x tenants))
        by_tenant[r.tenant].append(r)
    for name in names:
        mine = by_tenant[name]
        t_lat = np.array([r.latency_ms for r in mine if 200 <= r.status < 300])
        burst_usd = sum((r.cost_usd for r in mine if r.path == "burst"), 0.0)
        tenants[name] = {
            "requests": len(mine),
            "cost_usd": vm_usd * shares[name] + burst_usd,
            "vm_usd": vm_usd * shares[name],
            "burst_usd": burst_usd,
            "attributed_cost_usd": sum(r.cost_usd for r in mine),
            "slo_attainment": sum(
                1
                for r in mine
                if 200 <= r.status < 300 and r.latency_ms <= _limit(r, slos, deadlines, slo_of)
            )
            / len(mine),
            "p99_ms": float(np.percentile(t_lat, 99)) if t_lat.size else None,
        }
    return tenants


def verdict(summary: dict) -> tuple[int, str]:
    """Exit status and the line for stderr: 130 after Ctrl-C (the partial summary is out),
    1 when requests got no HTTP answer (the gateway died, hung or was never there) or every
    one was refused 401/403 (no or a wrong key: the run measured nothing), else 0."""
    done, left = summary["requests"], summary["unfinished"]
    planned = done + left
    if summary["stopped"] == "interrupted":
        return 130, (
            f"tidegate loadgen: interrupted: the summary covers the {done} of {planned} "
            f"requests answered by then ({left} not sent or dropped)"
        )
    failed = summary["failures"]
    refused = {s: n for s, n in summary.get("statuses", {}).items() if str(s) in ("401", "403")}
    if done and not failed and sum(refused.values()) == done:  # a replay that measured nothing
        shown = ", ".join(f"{status} x{count}" for status, count in sorted(refused.items()))
        return 1, (
            f"tidegate loadgen: error: the gateway refused every request ({shown}): give the "
            "tenants' keys (--api-key, --key TENANT=KEY, or --config with the gateway's "
            "[[tenants]]) and check their models and route permissions"
        )
    if not failed:
        return 0, _refusals(summary)
    kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(failed.items()))
    line = (
        f"tidegate loadgen: error: {sum(failed.values())} of {done} requests sent got no "
        f"answer ({kinds})"
    )
    if summary["stopped"]:
        line += f"; stopped: {summary['stopped']}, {left} of {planned} not sent"
    return 1, line


def _refusals(summary: dict) -> str:
    """A note when some requests were answered with an error status (a 429 rate limit, a 403
    model the tenant may not use, a 404 model the gateway does not serve, a 5xx): they count
    as missing the SLO, and the run exits 0 (the gateway's answers were measured)."""
    errors = {s: n for s, n in summary.get("statuses", {}).items() if not 200 <= int(s) < 300}
    if not errors:
        return ""
    shown = ", ".join(f"{status} x{count}" for status, count in sorted(errors.items()))
    return (
        f"tidegate loadgen: note: {sum(errors.values())} of {summary['requests']} requests "
        f"were answered with an error ({shown}); they count as missing the SLO"
    )


class LineProgress:
    """tqdm's interface (update, close) for a stderr that is not a terminal: one plain line
    at each tenth of the replay, none of tqdm's carriage returns."""

    def __init__(self, total: int, file=None, steps: int = 10):
        self.total, self.done, self.file = total, 0, file or sys.stderr
        self._marks = sorted({max(1, math.ceil(total * k / steps)) for k in range(1, steps + 1)})

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if any(before < m <= self.done for m in self._marks):
            pct = 100.0 * self.done / self.total if self.total else 100.0
            print(f"replay: {self.done}/{self.total} done ({pct:.0f}%)", file=self.file)
            self.file.flush()

    def close(self) -> None:
        pass
