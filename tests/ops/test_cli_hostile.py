"""The commands a careless user mistypes (plan, export, profile, simulate, tune, loadgen,
report): each mistake is one line on stderr naming it and exit status 2, never a traceback.
(tests/ops/test_hostile_input.py has the trace readers and the common flags; these are the
cases it does not cover.)"""

from __future__ import annotations

import pytest

from ops.cli import main
from vmpool.export import export_zoo


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A directory with an mlp repository and a few broken files."""
    root = tmp_path_factory.mktemp("cli-hostile")
    export_zoo("mlp", root / "repo")
    (root / "ok.csv").write_text("0.0,mlp\n0.5,mlp\n")
    (root / "garbage.csv").write_bytes(b"timestamp_s,model\n0.1,mlp\n\x00\xff\xfe\n")
    (root / "prof.json").write_text('{"a": 1}')
    (root / "badprof.json").write_text("[1, 2")
    (root / "adir").mkdir()
    return root


CASES = [
    ("plan", "nope --repo {d}/repo", "model 'nope' not found"),
    ("plan", "../../etc --repo {d}/repo", "invalid model name"),
    ("plan", "mlp --repo {d}/missing", "not found in repository"),
    ("plan", "mlp --repo {d}/repo --workers 0", "workers must be a positive integer"),
    ("plan", "mlp --repo {d}/repo --batch -1", "--batch must be >= 1"),
    ("plan", "mlp --repo {d}/repo --percentile 150", "--percentile must be between 0 and 1"),
    ("plan", "mlp --repo {d}/repo --percentile 0", "--percentile"),
    ("plan", "mlp --repo {d}/repo --objective cost --slo-ms -5", "--slo-ms must be > 0"),
    ("plan", "mlp --repo {d}/repo --memory-mb 0", "memory_mb"),
    ("plan", "mlp --repo {d}/repo --profile {d}/prof.json", "not a version 1 profile"),
    ("plan", "mlp --repo {d}/repo --profile {d}/badprof.json", "delimiter"),
    ("plan", "mlp --repo {d}/repo --profile {d}/missing.json", "No such file"),
    ("export", "nope --out {d}/exp", "neither a zoo model nor a file"),
    ("export", "mlp --out {d}/ok.csv", "is a file, not a model repository"),
    ("export", "mlp --out {d}/exp --name ../evil", "invalid model name"),
    ("export", "{d}/ok.csv --out {d}/exp", "not a torch.export program"),
    ("export", "resnet18 --out {d}/exp --weights {d}/ok.csv", "not a torch.save state_dict"),
    ("export", "resnet18 --out {d}/exp --size abc", "--size must look like HxW"),
    ("export", "mlp --out {d}/exp --batch 0", "--batch must be >= 1"),
    ("simulate", "--trace {d}/adir", "is a directory"),
    ("simulate", "--trace {d}/garbage.csv", "not a text file"),
    ("simulate", "--trace {d}/ok.csv --rate-scale inf", "--rate-scale"),
    ("simulate", "--trace {d}/ok.csv --param routing.nope=1", "nope"),
    ("simulate", "--trace {d}/ok.csv --param garbage", "expected KEY=VALUE"),
    ("simulate", "--trace {d}/ok.csv --trace-format nope", "unknown trace format"),
    ("simulate", "--trace {d}/ok.csv --profile {d}/badprof.json", "is not JSON"),
    ("simulate", "--trace synth:nope", "unknown synthetic trace"),
    ("simulate", "--trace synth:mmpp:duration_s=abc", "must be a number"),
    ("tune", "--trace {d}/garbage.csv", "not a text file"),
    ("tune", "--trace {d}/adir", "is a directory"),
    ("tune", "--trace {d}/ok.csv --trials 0", "--trials"),
    ("tune", "--trace {d}/ok.csv --rate-scale inf", "--rate-scale"),
    ("tune", "--trace {d}/ok.csv --slo-attainment 2", "--slo-attainment"),
    ("loadgen", "--trace {d}/garbage.csv --url http://127.0.0.1:9", "not a text file"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --speedup inf", "--speedup"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --speedup nan", "--speedup"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --timeout-s -1", "--timeout-s"),
    ("loadgen", "--trace {d}/ok.csv --url ftp://x", "--url"),
    ("loadgen", "--trace {d}/ok.csv --url http://127.0.0.1:9 --key nokey", "TENANT=KEY"),
    ("report", "--ledger postgresql://nobody@127.0.0.1:9/x", "127.0.0.1"),
    ("report", "--ledger {d}/ok.csv", "not a readable Tidegate ledger"),
    ("report", "--data-dir {d}/adir", "no ledger"),
    ("profile", "nope --repo {d}/repo", "model 'nope' not found"),
    ("profile", "mlp --repo {d}/repo --reps 0", "--reps"),
    ("profile", "mlp --repo {d}/repo --memory-mb -1 --reps 2 --workers 2", "--memory-mb"),
    ("profile", "mlp --repo {d}/repo --memory-mb 99999 --reps 2 --workers 2", "--memory-mb"),
]


def _id(case) -> str:
    values = case.values if hasattr(case, "values") else case
    return f"{values[0]}:{values[2]}"


@pytest.mark.parametrize("command, argv, says", CASES, ids=[_id(c) for c in CASES])
def test_a_mistake_is_one_line_and_status_2(d, capsys, command, argv, says):
    rc = main([command, *argv.format(d=d).split()])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err, err
    *before, last = err.splitlines()  # before: progress lines, e.g. the trace's summary
    assert not [line for line in before if "error" in line.lower()], err
    assert last.startswith(f"tidegate {command}: error:") and says in last, err


def test_serve_banner_names_the_grpc_port_it_really_bound():
    """``--grpc-port 0``: the banner tells the user the port to point tritonclient at."""
    from types import SimpleNamespace

    from gateway.settings import Settings
    from ops.commands.serve import _grpc_address, _with_grpc_port

    settings = Settings.load(None, grpc_port=0)
    app = SimpleNamespace(state=SimpleNamespace(gateway=SimpleNamespace(grpc=None)))
    server = SimpleNamespace(config=SimpleNamespace(app=app))
    assert _grpc_address(_with_grpc_port(settings, server)) == "off"  # could not be served
    app.state.gateway.grpc = SimpleNamespace(port=43121)
    assert _grpc_address(_with_grpc_port(settings, server)) == f"{settings.host}:43121"


def test_loadgen_pointed_at_a_port_that_is_not_http_is_one_line(d, capsys):
    """A user gives the gRPC port (or any non-HTTP service) as --url."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00\x00\x18\x04\x00\x00\x00\x00\x00 not http\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    rc = main(["loadgen", "--trace", f"{d}/ok.csv", "--url", url, "--no-progress"])
    thread.join(10)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "is --url the gateway's HTTP address?" in err, err


def test_a_csv_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Spreadsheet programs start a UTF-8 CSV with a BOM; the trace is the same."""
    from ops.traces import read_trace

    rows = "timestamp_s,model,tenant\n0.0,mlp,acme\n0.5,mlp,acme\n2.0,mlp,beta\n"
    (tmp_path / "plain.csv").write_text(rows, encoding="utf-8")
    (tmp_path / "bom.csv").write_text(rows, encoding="utf-8-sig")
    plain, bom = read_trace(tmp_path / "plain.csv"), read_trace(tmp_path / "bom.csv")
    assert len(bom) == len(plain) == 3
    assert bom.duration_s == plain.duration_s and bom.tenants == plain.tenants
