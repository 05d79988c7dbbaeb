"""The ops commands under bad input, as a new user types it: a missing file, an empty trace, a
malformed row, an unknown policy or tenant, numbers out of range, a path that cannot be
written. Each is one line on stderr and exit status 2, never a traceback; and the trace readers
raise only ``TraceError`` whatever the file holds."""

from __future__ import annotations

import sqlite3

import pytest

from ops.cli import main
from ops.traces import TraceError, read_trace

H19 = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"
BAD_FILES = {
    "empty": "",
    "blank_lines": "\n \n",
    "az19_negative": H19 + "o,a,f,http,1,-2,3\n",
    "az19_huge": H19 + "o,a,f,http,1,99999999999999,3\n",
    "az19_header_only": H19,
    "az21_nan": "app,func,end_timestamp,duration\na,f,nan,1\n",
    "llm_bad_date": "TIMESTAMP,ContextTokens,GeneratedTokens\nnotadate,1,2\n",
    "mooncake_nan": '{"timestamp": NaN}\n',
    "mooncake_truncated": '{"timestamp": 1}\n{bad\n',
    "gaps_inf": "inf\n",
    "gaps_text": "1\nx\n",
    "csv_negative": "timestamp_s,model\n-5,resnet18\n",
    "csv_malformed_row": "timestamp_s,model\n0.1,resnet18\n0.2\n",
    "csv_ms_not_s": "0,resnet18\n40000000000,resnet18\n",
    "binary": "\x00\x01\x02\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_trace_readers_raise_only_trace_errors(tmp_path, name):
    path = tmp_path / f"{name}.txt"
    path.write_text(BAD_FILES[name])
    with pytest.raises(TraceError):
        read_trace(path)


def test_epoch_seconds_in_a_csv_start_the_trace_at_its_first_request(tmp_path):
    path = tmp_path / "epoch.csv"
    path.write_text("1700000000.5,resnet18\n1700000003.5,resnet18\n")
    trace = read_trace(path)
    assert trace.duration_s == pytest.approx(3.0)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.csv").write_text("timestamp_s,model\n0.1,resnet18\n0.2\n")
    (tmp_path / "ok.csv").write_text("0.0,resnet18,acme\n0.5,resnet18,acme\n")
    (tmp_path / "pol.toml").write_text('routing_policy = "nope"\n')
    (tmp_path / "sim.toml").write_text('[simulate]\ntick_s = "fast"\n')
    db = tmp_path / "data"
    db.mkdir()
    (db / "ledger.sqlite").write_text("not a database")
    empty = tmp_path / "nodata"
    empty.mkdir()
    sqlite3.connect(empty / "ledger.sqlite").execute("CREATE TABLE x (a)").connection.close()
    return tmp_path


CASES = [
    ("simulate", "--trace {d}/missing.csv", "does not exist"),
    ("simulate", "--trace {d}/empty.csv", "empty"),
    ("simulate", "--trace {d}/bad.csv", "bad.csv:3"),
    ("simulate", "--trace {d}/ok.csv --policy nope", "unknown policy"),
    ("simulate", "--trace {d}/ok.csv --rate-scale -1", "--rate-scale"),
    ("simulate", "--trace {d}/ok.csv --slo-ms 0", "--slo-ms"),
    ("simulate", "--trace {d}/ok.csv --vm-boot-s -5", "--vm-boot-s"),
    ("simulate", "--trace {d}/ok.csv --model vgg16", "no requests for model"),
    ("simulate", "--trace synth:mmpp:duration_s=-5", "duration_s"),
    ("simulate", "--trace synth:mmpp:mean_low_s=0", "mean_low_s"),
    ("simulate", "--trace {d}/ok.csv --json {d}/no/dir/x.json", "does not exist"),
    ("simulate", "--trace {d}/ok.csv --policy config --config {d}/pol.toml", "routing_policy"),
    ("simulate", "--trace {d}/ok.csv --config {d}/sim.toml", "tick_s"),
    ("tune", "--trace {d}/missing.csv", "does not exist"),
    ("tune", "--trace {d}/empty.csv", "empty"),
    ("tune", "--trace {d}/bad.csv", "bad.csv:3"),
    ("tune", "--trace {d}/ok.csv --policy nope", "cannot tune"),
    ("tune", "--trace {d}/ok.csv --timeout-s -1", "--timeout-s"),
    ("tune", "--trace {d}/ok.csv --out {d}/no/dir/x.toml", "does not exist"),
    ("loadgen", "--trace {d}/missing.csv --url http://127.0.0.1:9", "does not exist"),
    ("loadgen", "--trace {d}/empty.csv --url http://127.0.0.1:9", "empty"),
    ("loadgen", "--trace {d}/bad.csv --url http://127.0.0.1:9", "bad.csv:3"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --speedup -2", "--speedup"),
    ("loadgen", "--trace {d}/ok.csv --url notaurl", "--url"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --key bob=k", "no tenant 'bob'"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --duration-s 0", "--duration-s"),
    ("report", "--data-dir {d}/missing", "no ledger"),
    ("report", "--data-dir {d}/data", "not a readable"),
    ("report", "--data-dir {d}/nodata", "not a readable"),
    ("report", "--data-dir {d}/ledger --tenant nobody", "unknown tenant 'nobody'"),
    ("report", "--data-dir {d}/ledger --since 2026-11-30 --until 2026-11-01", "before"),
    ("report", "--data-dir {d}/ledger --since yesterday", "ISO 8601"),
    ("report", "--data-dir {d}/ledger --since nan", "not a time"),
    ("report", "--data-dir {d}/ledger --by week", "cannot group by"),
    ("report", "--data-dir {d}/ledger --vm-bill-usd -1", "--vm-bill-usd"),
    ("report", "--data-dir {d}/ledger --out {d}/no/dir/r.html", "does not exist"),
]


@pytest.mark.parametrize("command, argv, says", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_bad_input_is_one_line_and_status_2(files, capsys, command, argv, says):
    from tests.ops.test_report import _ledger

    (files / "ledger").mkdir(exist_ok=True)
    _ledger(files / "ledger", n=30)
    rc = main([command, *argv.format(d=files).split()])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"tidegate {command}: error:") and says in err, err
