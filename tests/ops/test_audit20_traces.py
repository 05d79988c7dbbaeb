"""Session 20: traces as ops people bring them and our tests had not: quoted cells, blanks
around commas, trailing commas, counts past int64, negative durations, synthetic parameters
that would fill the memory, a --model among a config's mapped models, a truncated download."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ops.cli import main
from ops.traces import TraceError, read_trace

MINUTES = 5
HEADER = ["HashOwner", "HashApp", "HashFunction", "Trigger", *map(str, range(1, MINUTES + 1))]
ROWS = [
    ["o1", "appA", "f1", "http", "3", "0", "7", "1", "2"],
    ["o1", "appB", "f2", "timer", "0", "0", "0", "0", "0"],  # a function that never ran
    ["o2", "appC", "f3", "queue", "5", "4", "0", "9", "1"],
]
AZ21 = [["app", "func", "end_timestamp", "duration"]] + [
    [f"a{i % 2}", "f", f"{(i * 37) % 50 + 0.5:.3f}", "0.25"] for i in range(40)
]
PLAIN = [["timestamp_s", "model", "tenant"]] + [
    [f"{(i * 13) % 30 * 0.5:.2f}", "resnet18", "acme" if i % 3 else "beta"] for i in range(30)
]


def _write(path, rows, sep=",", end="\n", quote=False, bom=""):
    cell = (lambda c: f'"{c}"') if quote else (lambda c: c)
    path.write_text(bom + end.join(sep.join(cell(c) for c in r) for r in rows) + end, newline="")
    return path


def _same(a, b):
    np.testing.assert_array_equal(a.arrivals_s, b.arrivals_s)
    assert (a.models, a.tenants) == (b.models, b.tenants)
    np.testing.assert_array_equal(a.tenant_idx, b.tenant_idx)


@pytest.mark.parametrize("rows", [[HEADER, *ROWS], AZ21, PLAIN], ids=["a19", "a21", "csv"])
@pytest.mark.parametrize(
    "style",
    [
        {"quote": True},  # a spreadsheet's export: every cell quoted (format not told before)
        {"sep": ", "},  # blanks after the commas (the 2019 header was refused)
        {"end": "\r\n", "bom": "\ufeff"},
        {"quote": True, "end": "\r\n", "bom": "\ufeff"},
    ],
    ids=["quoted", "spaced", "crlf-bom", "all"],
)
def test_a_trace_written_another_way_reads_as_the_plain_file(tmp_path, rows, style):
    plain = read_trace(_write(tmp_path / "plain.csv", rows), seed=4)
    other = read_trace(_write(tmp_path / "other.csv", rows, **style), seed=4)
    _same(plain, other)


def test_a_trailing_comma_on_every_azure_2019_line_is_read(tmp_path):
    plain = read_trace(_write(tmp_path / "plain.csv", [HEADER, *ROWS]), seed=1)
    trailing = read_trace(_write(tmp_path / "t.csv", [[*r, ""] for r in [HEADER, *ROWS]]), seed=1)
    _same(plain, trailing)
    assert len(plain) == sum(int(c) for r in ROWS for c in r[4:])


def test_a_day_of_counts_with_functions_past_200m_in_all_is_refused(tmp_path):
    rows = [["o", "a", f"f{i}", "http", "150000000", "0"] for i in range(2)]
    with pytest.raises(TraceError, match="more than 200,000,000 requests"):
        read_trace(_write(tmp_path / "many.csv", [HEADER[:6], *rows]))


@pytest.mark.parametrize(
    "row, what",
    [
        (["o", "a", "f", "http", "1"], "expected 6 columns, got 5"),
        (["o", "a", "f", "http", "1", "2", "3"], "expected 6 columns, got 7"),
        (["o", "a", "f", "http", "1", ""], "expected 6 columns, got 5"),
        (["o", "a", "f", "http", "1", "x"], "must be integers"),
        (["o", "a", "f", "http", "1", "2.5"], "must be integers"),
        (["o", "a", "f", "http", "", "2"], "must be integers"),
        (["o", "a", "f", "http", "-1", "2"], "negative"),
        (["o", "a", "f"], "expected HashOwner"),
    ],
)
def test_a_bad_azure_2019_line_is_named(tmp_path, row, what):
    with pytest.raises(TraceError, match=rf"bad.csv:3: .*{what}"):
        read_trace(
            _write(tmp_path / "bad.csv", [HEADER[:6], ["o", "a", "g", "http", "1", "1"], row])
        )


def test_columns_after_the_minutes_are_left_out(tmp_path):
    """A day file with a total and a note after its minutes (a spreadsheet's): the note's text
    was read as a count ('must be integers'), a total as one more minute."""
    plain = read_trace(_write(tmp_path / "plain.csv", [HEADER, *ROWS]), seed=2)
    noted = [[*HEADER, "Total", "Note"]] + [
        [*r, str(sum(int(c) for c in r[4:])), "seen"] for r in ROWS
    ]
    _same(plain, read_trace(_write(tmp_path / "noted.csv", noted), seed=2))


def test_blank_lines_of_spaces_are_skipped(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("timestamp_s,model\n1,resnet18\n   \n2,resnet18\n\t\n3,resnet18\n")
    assert len(read_trace(path)) == 3  # (a line of spaces was 'expected timestamp_s,model')


@pytest.mark.parametrize(
    "count, what",
    [
        ("99999999999999999999", "is past 200,000,000"),  # past 2**63: OverflowError traceback
        ("9000000000000000000", "is past 200,000,000"),
    ],
)
def test_an_azure_2019_count_too_large_is_one_line(tmp_path, capsys, count, what):
    path = _write(tmp_path / "big.csv", [HEADER[:6], ["o", "a", "f", "http", "1", count]])
    with pytest.raises(TraceError, match=what):
        read_trace(path)
    assert main(["simulate", "--trace", str(path), "--policy", "vm-peak"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidegate simulate: error:") and "\n" not in err


def test_two_counts_that_overflow_together_are_refused_not_wrapped(tmp_path):
    half = str(2**62 + 2**61)  # each fits int64, their sum wraps negative
    path = _write(tmp_path / "wrap.csv", [HEADER[:6], ["o", "a", "f", "http", half, half]])
    with pytest.raises(TraceError, match="past|more than"):
        read_trace(path)


def test_a_negative_azure_2021_duration_is_refused(tmp_path):
    """end - duration put the call's start after its end, silently."""
    path = _write(tmp_path / "neg.csv", [AZ21[0], ["a", "f", "10", "-5"], ["a", "f", "11", "1"]])
    with pytest.raises(TraceError, match=r"neg.csv:2: duration -5"):
        read_trace(path)


@pytest.mark.parametrize(
    "spec, what",
    [
        ("diurnal:burst_mult=1e300,duration_s=10", "requests expected"),  # numpy traceback
        ("flash-crowd:peak_mult=1e308,duration_s=100,start_s=10", "requests expected"),
        ("steady:rps=1e12", "requests expected"),
        ("diurnal:bursts=1e9,duration_s=100", "bursts must be a whole number"),  # filled memory
        ("diurnal:bursts=2.5", "bursts must be a whole number"),
        ("mmpp:mean_low_s=1e-6,mean_high_s=1e-6", "state changes"),
        ("steady:rps=5,rps=6", "rps is given twice"),  # the last one won
    ],
)
def test_synthetic_parameters_past_what_fits_are_one_line_and_quick(capsys, spec, what):
    t0 = time.perf_counter()
    assert main(["simulate", "--trace", f"synth:{spec}", "--policy", "vm-peak"]) == 2
    assert time.perf_counter() - t0 < 20  # refused before drawing, not after
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidegate simulate: error:") and what in err
    assert "\n" not in err and "Warning" not in err  # (numpy's overflow warnings too)


def test_a_synthetic_kind_is_read_whatever_its_case():
    np.testing.assert_array_equal(
        read_trace("synth:Steady:rps=2,duration_s=60").arrivals_s,
        read_trace("synth:steady:rps=2,duration_s=60").arrivals_s,
    )


def test_model_picks_its_mapped_functions_not_every_unmapped_one_too(tmp_path, capsys):
    """A rule maps o1's functions to resnet50; simulate named 'resnet18 N, resnet50 M' and
    asked for --model; --model resnet50 then simulated every request (the unmapped functions
    fell to --model as their default)."""
    trace = _write(tmp_path / "a19.csv", [HEADER, *ROWS])
    config = tmp_path / "map.toml"
    config.write_text('[[trace.map]]\nmatch = "o1/*"\nmodel = "resnet50"\ntenant = "acme"\n')
    o1 = sum(int(c) for r in ROWS if r[0] == "o1" for c in r[4:])
    total = sum(int(c) for r in ROWS for c in r[4:])
    counts = {}
    for model in ("resnet50", "resnet18"):
        out = tmp_path / f"{model}.json"
        argv = ["simulate", "--trace", str(trace), "--config", str(config), "--model", model]
        assert main([*argv, "--policy", "burst-only", "--json", str(out)]) == 0
        counts[model] = json.loads(out.read_text())["requests"]
    assert counts == {"resnet50": o1, "resnet18": total - o1}
    assert main(["simulate", "--trace", str(trace), "--config", str(config), "--model", "mlp"]) == 2
    assert "no requests for model 'mlp'" in capsys.readouterr().err


def test_a_plot_named_png_keeps_the_page_beside_it(tmp_path, capsys):
    """--plot out.png wrote the page, then the PNG over it: no HTML was left."""
    out = tmp_path / "out.png"
    argv = ["simulate", "--trace", "synth:steady:rps=2,duration_s=60", "--policy", "vm-peak"]
    assert main([*argv, "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "out.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page


@pytest.mark.parametrize(
    "name, text",
    [
        ("cut.csv", "1,40,80,9\n2,0,30,60\n3,0,5"),  # per-second, cut inside a line
        ("cut.jsonl", '{"timestamp": 10}\n{"timestamp": 20}\n{"timesta'),
    ],
)
def test_a_download_cut_short_says_so(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert main(["simulate", "--trace", str(path), "--policy", "vm-peak"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ends mid-line" in err and "\n" not in err


@pytest.mark.parametrize("fmt", ["a19", "a21"])
def test_a_rule_that_matches_no_function_is_a_warning(tmp_path, capsys, fmt):
    """A regular expression where a glob is read (or a typo) left every function to the
    defaults, and nothing said so."""
    rows = [HEADER, *ROWS] if fmt == "a19" else AZ21
    trace = _write(tmp_path / "t.csv", rows)
    config = tmp_path / "map.toml"
    config.write_text(
        '[[trace.map]]\nmatch = "^o1/.*$"\ntenant = "acme"\n'
        '[[trace.map]]\nmatch = "*"\ntenant = "rest"\n'
    )
    out = tmp_path / "s.json"
    argv = ["simulate", "--trace", str(trace), "--config", str(config), "--json", str(out)]
    assert main([*argv, "--policy", "burst-only"]) == 0
    err = capsys.readouterr().err
    assert "warning: [[trace.map]] rule 1 (match = '^o1/.*$') matches no function" in err
    assert "rule 2" not in err
    assert set(json.loads(out.read_text())["tenants"]) == {"rest"}


@pytest.mark.parametrize(
    "name, data, what",
    [
        ("plot.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a text file"),  # was
        # 'expected numbers only: utf-8 codec...' and 'the file ends mid-line'
        ("gaps.txt", b"1e30\n1\n", "add up to more than 366 days"),  # both read as 0 s
        ("sec.csv", b"1,3\n100000000000,4\n", "span more than 366 days"),  # 'memory'
        ("big.jsonl", b'{"timestamp": 1e300}\n{"timestamp": 5}\n', r"spans 1.157e\+292 days"),
    ],
)
def test_files_no_trace_is_made_of_say_what_they_are(tmp_path, name, data, what):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TraceError, match=what) as caught:
        read_trace(path)
    assert "mid-line" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "command, scale, what",
    [
        ("simulate", "1e7", "is more than 200,000,000"),  # numpy's MemoryError traceback
        ("loadgen", "1e7", "is more than 200,000,000"),
        ("simulate", "1e-9", "no requests in the trace at --rate-scale 1e-09"),  # 0 at 100 %
    ],
)
def test_a_rate_scale_past_what_a_trace_holds_is_one_line(tmp_path, capsys, command, scale, what):
    trace = _write(tmp_path / "p.csv", PLAIN)
    argv = [command, "--trace", str(trace), "--rate-scale", scale]
    extra = ["--policy", "vm-peak"] if command == "simulate" else ["--url", "http://127.0.0.1:9"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tidegate {command}: error: " + err.split("error: ", 1)[1] and what in err
    assert "\n" not in err


def test_tenants_figures_match_each_tenants_own_requests(tmp_path):
    """Per-tenant attainment and p99 by one sort (a mask per tenant was O(requests x tenants):
    2.4 s of a 300,000-request, 3,000-tenant run), equal to numpy's on each tenant's own."""
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 120, 3000))
    tenant = rng.integers(0, 40, t.size)
    path = tmp_path / "many.csv"
    path.write_text(
        "timestamp_s,model,tenant\n"
        + "".join(f"{a:.4f},resnet18,u{b}\n" for a, b in zip(t, tenant, strict=True))
    )
    from ops.sim import load_sim_profile, simulate

    trace = read_trace(path)
    res = simulate(trace, "burst-only", load_sim_profile(None, "resnet18"))
    slo = res.summary["slo_ms"]
    for k, name in enumerate(trace.tenants):
        mine = trace.tenant_idx == k
        got = res.summary["tenants"][name]
        assert got["slo_attainment"] == float((res.latency_ms[mine] <= slo).mean())
        assert got["p99_ms"] == float(np.percentile(res.latency_ms[mine], 99))


def test_a_written_trace_reads_back_with_its_odd_tenant_names(tmp_path):
    from ops.traces import write_csv

    src = tmp_path / "src.csv"
    src.write_text('timestamp_s,model,tenant\n0.5,resnet18,"acme, inc"\n1,resnet18,"say ""hi"""\n')
    out = tmp_path / "out.csv"
    write_csv(read_trace(src), out)
    assert read_trace(out).tenants == ("acme, inc", 'say "hi"')  # (a 4-column row before)


@pytest.mark.parametrize(
    "table, what",
    [
        ('[[trace.map]]\nmatch = "o1/*"\ntenant = 5\n', "rule 1 tenant must be a non-empty"),
        ('[[trace.map]]\nmatch = ["o1/*"]\nmodel = "m"\n', "rule 1 match must be"),  # its repr
        ("[trace]\ndefault_tenant = 3\n", "default_tenant must be"),  # a 'sort' traceback
        ("[trace]\nmap = 3\n", "map must be [[trace.map]] tables"),  # a TypeError traceback
        ('[trace]\ndefault_model = ""\n', "default_model must be"),
    ],
)
def test_a_trace_table_of_the_wrong_types_is_one_line(tmp_path, capsys, table, what):
    trace = _write(tmp_path / "a19.csv", [HEADER, *ROWS])
    config = tmp_path / "c.toml"
    config.write_text(table)
    argv = ["simulate", "--trace", str(trace), "--config", str(config), "--policy", "vm-peak"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidegate simulate: error:") and what in err and "\n" not in err
