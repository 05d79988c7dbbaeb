"""Session 22 (ops22): trace files with odd but legal headers, negative times and a large
offset. Before: a header with an extra column or the columns of a format in another order was
refused ("cannot tell the trace format", "expected timestamp_s,model[,tenant]"), a negative
Azure 2021 end_timestamp or Mooncake timestamp was rebased silently, and a CSV whose first
request came 58 days in simulated 58 days of nothing (more than 5 minutes, killed)."""

from __future__ import annotations

import pytest

from ops.cli import main
from ops.traces import TraceError, read_trace

ROWS = [(i * 0.5, "m1" if i % 3 else "m2", f"t{i % 3}") for i in range(30)]


def _expect_rows(trace) -> None:
    assert len(trace) == 30
    assert trace.duration_s == pytest.approx(14.5)
    assert trace.models == ("m1", "m2") and trace.tenants == ("t0", "t1", "t2")
    per_tenant = {t: int((trace.tenant_idx == i).sum()) for i, t in enumerate(trace.tenants)}
    assert per_tenant == {"t0": 10, "t1": 10, "t2": 10}


@pytest.mark.parametrize(
    "header, line",
    [
        ("timestamp_s,model,tenant,note", "{t},{m},{n},x"),
        ("model,tenant,timestamp_s", "{m},{n},{t}"),
        ("tenant,timestamp_s,ignored,model", "{n},{t},1,{m}"),
    ],
)
def test_a_csv_header_names_its_columns_in_any_order_beside_others(tmp_path, header, line):
    path = tmp_path / "t.csv"
    body = "".join(line.format(t=t, m=m, n=n) + "\r\n" for t, m, n in ROWS)
    path.write_text(header + "\r\n" + body)
    _expect_rows(read_trace(path))


def test_azure2021_and_llm_columns_in_another_order(tmp_path):
    a21 = tmp_path / "a21.csv"
    a21.write_text(
        "func,duration,app,end_timestamp,extra\n"
        + "".join(f"f{i % 2},0.5,a,{10 + i},z\n" for i in range(20))
    )
    trace = read_trace(a21)
    assert len(trace) == 20 and trace.duration_s == pytest.approx(19.0)
    llm = tmp_path / "llm.csv"
    llm.write_text(
        "ContextTokens,GeneratedTokens,TIMESTAMP\n"
        + "".join(f"10,5,2023-11-16 18:15:{i:02d}.500000\n" for i in range(0, 40, 4))
    )
    trace = read_trace(llm)
    assert len(trace) == 10 and trace.duration_s == pytest.approx(36.0)


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("a21.csv", "app,func,end_timestamp,duration\na,f,-5,0.1\na,f,2,0.1\n", "negative"),
        ("mc.jsonl", '{"timestamp": -100}\n{"timestamp": 100}\n', "negative"),
        ("a21b.csv", "app,func,end_timestamp\na,f,1\n", "no column duration"),
    ],
)
def test_negative_times_and_a_missing_column_are_one_line_errors(
    tmp_path, capsys, name, text, says
):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError, match=says):
        read_trace(path)
    assert main(["simulate", "--trace", str(path), "--policy", "vm-peak"]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_csv_that_starts_days_in_is_read_from_its_first_request(tmp_path, capsys):
    path = tmp_path / "late.csv"
    path.write_text("timestamp_s,model\n" + "".join(f"{5e6 + i},resnet18\n" for i in range(20)))
    trace = read_trace(path)
    assert trace.arrivals_s[0] == 0.0 and trace.duration_s == 19.0
    assert "more than a day in" in trace.extra["warnings"][0]
    out = tmp_path / "sim.json"
    assert main(["simulate", "--trace", str(path), "--policy", "vm-peak", "--json", str(out)]) == 0
    assert "more than a day in" in capsys.readouterr().err


def test_a_lead_under_a_day_is_simulated_as_given(tmp_path):
    path = tmp_path / "lead.csv"
    path.write_text("timestamp_s,model\n" + "".join(f"{600 + i},resnet18\n" for i in range(5)))
    trace = read_trace(path)
    assert trace.arrivals_s[0] == 600.0 and not trace.extra.get("warnings")


@pytest.mark.parametrize(
    "text",
    [
        "timestamp_s,model,tenant\n3,m2,b\n1,m1,\n2,,a\n1,m1,a\n",
        "tenant,timestamp_s,model,x\r\nb,3,m2,0\r\n,1,m1,0\r\na,2,,0\r\n",
        "3,m2,b\n1,m1,a\n2,m1,b\n",
        "3,m2\n1,m1\n",
    ],
)
def test_the_bulk_read_is_the_line_by_line_read(tmp_path, text):
    """A plain CSV is read in one pass (2 M lines: 4.0 s where line by line took 9.2 s):
    the same arrivals, models and tenants, empty cells the defaults."""
    from ops.trace_csv import _bulk, _by_line
    from ops.traces import TraceMapping

    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    bulk, by_line = _bulk(path, TraceMapping()), _by_line(path, TraceMapping())
    assert bulk is not None
    assert bulk.arrivals_s.tolist() == by_line.arrivals_s.tolist()
    assert bulk.models == by_line.models and bulk.tenants == by_line.tenants
    named = lambda t: [(t.models[m], t.tenants[n]) for m, n in zip(t.model_idx, t.tenant_idx)]  # noqa: E731
    assert named(bulk) == named(by_line)


@pytest.mark.parametrize(
    "text, says",
    [
        ("timestamp_s,model\n1,m1\n2\n3,m1,a,b\n", ":3: expected timestamp_s,model"),
        ("timestamp_s,model\n1,m1\nx,m1\n", ":3: timestamp_s 'x' is not a number"),
        ("1,m1,a\n2,m1\n3,m1,a,b\n", ":3: expected timestamp_s,model"),
    ],
)
def test_a_ragged_or_bad_file_is_still_named_by_line(tmp_path, text, says):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=says):
        read_trace(path, fmt="csv")


def test_a_mapping_whose_rules_match_nothing_is_an_error(tmp_path, capsys):
    """One rule that matches no function while another does is a warning (test_audit20_traces);
    before, rules that all matched nothing were warnings too and every request ran as the
    default model's and tenant's at exit 0."""
    trace = tmp_path / "a21.csv"
    trace.write_text(
        "app,func,end_timestamp,duration\n" + "".join(f"a{i % 2},f,{i},0.1\n" for i in range(9))
    )
    config = tmp_path / "map.toml"
    config.write_text('[[trace.map]]\nmatch = "nomatch/*"\nmodel = "mobilenet_v2"\n')
    for command in ("simulate", "loadgen"):
        argv = [command, "--trace", str(trace), "--config", str(config)]
        argv += ["--url", "http://127.0.0.1:9"] if command == "loadgen" else []
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "no [[trace.map]] rule matches a function of the trace ('nomatch/*'" in err
        assert "'a0/f'" in err and len(err.strip().splitlines()) == 1
