"""Trace readers on small files in each exact format, the mapping rule, synthetic generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ops.traces import MapRule, TraceError, TraceMapping, read_trace, write_csv

SHARED = Path("/work/shared/traces")


def _azure2019(path: Path) -> Path:
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(i) for i in range(1, 1441))
    row_a = ["o1", "appA", "f1", "http"] + ["0"] * 1440
    row_a[4] = "30"
    row_a[4 + 9] = "12"
    row_b = ["o2", "appB", "f9", "timer"] + ["1"] * 1440
    path.write_text("\n".join([header, ",".join(row_a), ",".join(row_b)]) + "\n")
    return path


def test_azure2019_spreads_each_minute_and_maps_functions(tmp_path):
    mapping = TraceMapping(default_model="mlp", rules=(MapRule("o1/appA/*", "resnet50", "acme"),))
    trace = read_trace(_azure2019(tmp_path / "d01.csv"), mapping=mapping, seed=3)
    assert len(trace) == 30 + 12 + 1440
    acme = trace.tenant_idx == trace.tenants.index("acme")
    t_acme = trace.arrivals_s[acme]
    assert ((t_acme < 60).sum(), ((t_acme >= 540) & (t_acme < 600)).sum()) == (30, 12)
    assert set(trace.models[i] for i in trace.model_idx[acme]) == {"resnet50"}
    assert set(trace.models[i] for i in trace.model_idx[~acme]) == {"mlp"}
    # one call per minute from appB: exactly one arrival in every minute
    other = np.floor(trace.arrivals_s[~acme] / 60).astype(int)
    assert np.array_equal(np.bincount(other, minlength=1440), np.ones(1440))
    again = read_trace(tmp_path / "d01.csv", mapping=mapping, seed=3)
    assert np.array_equal(trace.arrivals_s, again.arrivals_s)  # seeded


def test_azure2021_arrival_is_end_minus_duration(tmp_path):
    p = tmp_path / "inv.csv"
    p.write_text("app,func,end_timestamp,duration\na,f,10.5,0.5\na,g,5.0,1.0\nb,f,12.0,0.25\n")
    trace = read_trace(p, mapping=TraceMapping(rules=(MapRule("b/*", tenant="bee"),)))
    assert trace.arrivals_s.tolist() == [0.0, 6.0, 7.75]
    assert [trace.tenants[i] for i in trace.tenant_idx] == ["default", "default", "bee"]


def test_plain_csv_with_models_and_tenants(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("timestamp_s,model,tenant\n0.0,mlp,a\n0.5,resnet18,b\n0.25,mlp\n")
    trace = read_trace(p)
    assert trace.arrivals_s.tolist() == [0.0, 0.25, 0.5]
    assert [trace.models[i] for i in trace.model_idx] == ["mlp", "mlp", "resnet18"]
    out = tmp_path / "back.csv"
    write_csv(trace, out)
    assert read_trace(out).arrivals_s.tolist() == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    "content, fmt, words",
    [
        ("timestamp_s,model\nabc,mlp\n", "csv", "line 2"),
        ("app,func,end_timestamp,duration\na,f,x,1\n", "azure2021", "numbers"),
        ("HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,t,1\n", "azure2019", "columns"),
        ('{"ts": 1}\n', "mooncake", "timestamp"),
        ("1,2,x,4\n", "per-second", "numbers"),
        ("0.1\n-0.2\n", "gaps", "negative"),
    ],
)
def test_malformed_input_is_a_clear_error(tmp_path, content, fmt, words):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(TraceError) as err:
        read_trace(p, fmt=fmt)
    message = str(err.value)
    assert "bad.txt" in message
    if words == "line 2":
        assert ":2:" in message
    else:
        assert words in message


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("hello,world\n")
    with pytest.raises(TraceError, match="cannot tell"):
        read_trace(tmp_path / "x.csv")


def test_real_shared_traces_keep_their_shape():
    code = read_trace(SHARED / "azure/AzureLLMInferenceTrace_code.csv")
    assert len(code) == 8819 and 3300 < code.duration_s < 3500
    assert code.counts().max() / (len(code) / code.duration_s) > 15  # very bursty
    moon = read_trace(SHARED / "mooncake/conversation_trace.jsonl")
    assert len(moon) == 12031 and 3400 < moon.duration_s < 3600
    gaps = read_trace(SHARED / "inferall/TW_may25_13-14")
    assert len(gaps) > 200_000 and 3500 < gaps.duration_s < 3700
    wits = read_trace(SHARED / "inferall/WITS.csv", seed=1)
    raw = np.loadtxt(SHARED / "inferall/WITS.csv", delimiter=",")
    assert len(wits) == int(raw[:, -1].sum())


def test_synthetic_generators_have_the_asked_shape():
    mmpp = read_trace("synth:mmpp:duration_s=7200,low_rps=5,high_rps=50")
    per_s = mmpp.counts()
    assert 5 < len(mmpp) / mmpp.duration_s < 50 and per_s.max() > 40
    flash = read_trace("synth:flash-crowd:base_rps=10,peak_mult=10,start_s=600")
    before, peak = flash.counts()[:600].mean(), flash.counts()[700:800].mean()
    assert 8 < before < 12 and 85 < peak < 115
    day = read_trace("synth:diurnal:duration_s=86400,mean_rps=2,bursts=0")
    hourly = day.counts(3600.0)
    assert hourly[12] > 2 * hourly[0]  # peak at noon, trough at midnight
    with pytest.raises(TraceError, match="known"):
        read_trace("synth:mmpp:rate=3")
    with pytest.raises(TraceError, match="unknown synthetic"):
        read_trace("synth:sawtooth")


def test_rate_scaling_keeps_the_shape_per_second_and_speedup_compresses_time():
    trace = read_trace(SHARED / "azure/AzureLLMInferenceTrace_code.csv")
    up = trace.scaled(rate_factor=20, seed=2)
    assert len(up) == 20 * len(trace)
    assert np.array_equal(up.counts(), 20 * trace.counts())  # each second's count x20
    assert np.all(np.diff(up.arrivals_s) >= 0)
    assert len(np.unique(np.round(up.arrivals_s, 4))) > 0.9 * len(up)  # copies not stacked
    down = trace.scaled(rate_factor=0.25, seed=2)
    assert 0.2 * len(trace) < len(down) < 0.3 * len(trace)
    fast = trace.scaled(speedup=4.0)
    assert fast.duration_s == pytest.approx(trace.duration_s / 4)


@pytest.mark.parametrize(
    "spec",
    ["synth:flash-crowd:duration_s=600", "synth:step:duration_s=100,start_s=100"],
)
def test_a_burst_that_would_start_after_the_trace_ends_is_refused(spec):
    """It generated a steady trace without a word (a flash crowd at its default 1200 s in a
    600 s trace)."""
    with pytest.raises(TraceError, match=r"start_s \d+ is not before duration_s"):
        read_trace(spec)
