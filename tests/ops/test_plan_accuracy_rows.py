"""``ops/bench/plan_accuracy.py``'s SLO check and its evidence for slow requests."""

from __future__ import annotations

from types import SimpleNamespace

from ops.bench.accuracy_rows import P99_MIN_SAMPLES, slo_check
from ops.bench.request_trace import RequestTrace, format_evidence, slow_vs_rest

PRED = SimpleNamespace(mean_ms=100.0, var_ms2=100.0)


def _row(latencies: list[float], plan: str = "cost x4") -> dict:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * (len(ordered) - 1) + 0.5))]
    return {
        "plan": plan,
        "latencies_ms": latencies,
        "samples": len(latencies),
        "measured_p99_ms": p99,
    }


def test_a_p99_of_few_requests_is_called_their_slowest():
    note = slo_check(_row([100.0] * 48), PRED, 130.0, [_row([90.0] * 12, "latency x2")])
    assert "meets it" in note and f"p99 of < {P99_MIN_SAMPLES} requests" in note
    assert "feasible: latency x2 measured p99 90 ms" in note
    many = _row([100.0] * 99 + [140.0])
    note = slo_check(many, PRED, 130.0, [_row([90.0] * 12, "latency x2")])
    assert "1 of 100 requests over it" in note and "p99 of <" not in note


def test_an_slo_no_plan_measured_under_is_not_shown_feasible():
    row = _row([150.0] * 100)
    note = slo_check(row, PRED, 130.0, [_row([140.0] * 12, "latency x2")])
    assert "MISSES it" in note and "NOT shown feasible" in note
    assert row["slo_feasible"] is False and row["p99_means_p99"] is True


def _trace(at_s: float, total_ms: float, run_ms: float, stages: list[float]) -> RequestTrace:
    return RequestTrace(at_s, total_ms, total_ms - 8.0, stages, run_ms, 40.0, 300.0, 0.0, 11.0)


def test_the_evidence_compares_the_slow_requests_with_the_rest():
    """Slow requests whose functions computed 1.4x longer in every stage, at one moment: the
    evidence shows when they ran and that their CPU time, not their waiting, grew."""
    fast = [_trace(i * 0.5, 460.0, 600.0, [155.0, 190.0, 90.0]) for i in range(20)]
    slow = [_trace(33.0 + i * 0.7, 670.0, 840.0, [244.0, 285.0, 115.0]) for i in range(4)]
    ev = slow_vs_rest(fast + slow, 600.0)
    assert ev["slow"] == 4 and ev["slow_at_s"] == [33.0, 33.7, 34.4, 35.1]
    assert ev["fn_run_ms_slow_vs_rest"] == (840.0, 600.0)
    assert ev["fn_wait_ms_slow_vs_rest"] == (40.0, 40.0)
    text = format_evidence(ev)
    assert "4 over-SLO requests" in text and "244/155 285/190 115/90" in text
    assert "nothing to compare" in format_evidence(slow_vs_rest(fast, 600.0))
