"""plan_accuracy's SLO check says when the over-SLO requests came: MobileNetV2's 15 of 100 over
its SLO (1 Dec) all came in 0.9 s of a 4.6 s run, one slow episode of the host, not 15
independent slow requests."""

from __future__ import annotations

from types import SimpleNamespace

from ops.bench.accuracy_rows import slo_check


def test_the_slo_check_names_the_window_the_misses_came_in():
    totals = [24.0] * 100
    for i in range(40, 55):
        totals[i] = 39.0  # one episode
    row = {
        "latencies_ms": totals,
        "measured_p99_ms": 39.0,
        "samples": 100,
        "requests": [{"at_s": 0.046 * i, "total_ms": t} for i, t in enumerate(totals)],
    }
    pred = SimpleNamespace(mean_ms=25.0, var_ms2=25.0)
    note = slo_check(row, pred, 36.0, [])
    assert row["over_slo"] == 15 and not row["meets_slo_p99"]
    assert row["over_slo_span_s"] < 0.7 < 4.0 < row["run_span_s"]
    assert "those over it came within 0.6 s of the run's 4.6 s" in note
