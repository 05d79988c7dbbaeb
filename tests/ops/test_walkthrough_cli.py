"""A new operator runs every flag `--help` lists, once with a sensible value and once with a
bad one (session 18 walkthrough). What they saw before each fix: a numpy traceback for a
negative ``--seed`` (simulate, tune, loadgen) or ``[trace] seed``, an OverflowError for
``--slo-ms inf``, a table with ``nan`` VM hours for ``--vm-boot-s inf``, ``tune --plot`` taken
and ignored, ``function-runtime --memory-budget-mb 0`` taken as "not given", a bare
"Expecting value: line 1 column 1" from ``plan --profile``, and flags whose ``--help`` said
nothing or something else than what they do."""

from __future__ import annotations

import pytest

from ops.cli import main


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("walkthrough-cli")
    (root / "ok.csv").write_text("timestamp_s,model\n0.0,mlp\n0.5,mlp\n1.5,mlp\n")
    (root / "negseed.toml").write_text("[trace]\nseed = -4\n")
    (root / "infslo.toml").write_text("[simulate]\nslo_ms = 1e400\n")
    (root / "notjson.json").write_text("timestamp_s,model\n")
    return root


CASES = [
    ("simulate --trace {d}/ok.csv --policy threshold --seed -1", "--seed: must be an integer >= 0"),
    ("simulate --trace {d}/ok.csv --config {d}/negseed.toml", "[trace] seed -4: an integer >= 0"),
    ("simulate --trace {d}/ok.csv --slo-ms inf", "--slo-ms must be a finite number > 0"),
    ("simulate --trace {d}/ok.csv --vm-boot-s inf", "--vm-boot-s must be a finite number >= 0"),
    (
        "simulate --trace {d}/nomatch.d*.csv",
        "nomatch.d*.csv does not exist: no file matches the pattern",
    ),
    ("simulate --trace synth:steady:seed=-1", "synth:steady: seed must be an integer >= 0"),
    ("simulate --trace synth:steady:seed=1.5", "synth:steady: seed must be an integer, got"),
    ("simulate --trace {d}/ok.csv --policy knative --param autoscaling.policy=target", "sets it"),
    (
        "simulate --trace {d}/ok.csv --policy knative --param autoscaling.max_replicas=1e400",
        "finite",
    ),
    ("simulate --trace {d}/ok.csv --policy slo-aware --param routing.slo_margin=[1]", "(--param"),
    ("simulate --trace {d}/ok.csv --policy knative --param autoscaling.max_replicas=x", "(--param"),
    ("simulate --trace {d}/ok.csv --config {d}/infslo.toml", "slo_ms must be a finite number"),
    ("tune --trace {d}/ok.csv --seed -3", "--seed: must be an integer >= 0"),
    ("tune --trace {d}/ok.csv --plot {d}/t.html", "unrecognized arguments: --plot"),
    ("tune --trace {d}/ok.csv --param autoscaling.max_replicas=2", "unrecognized arguments"),
    ("loadgen --trace {d}/ok.csv --url http://127.0.0.1:9 --seed -1", "--seed: must be an"),
    ("loadgen --trace {d}/ok.csv --url http://127.0.0.1:9 --config {d}/negseed.toml", "seed -4"),
    (
        "loadgen --trace {d}/ok.csv --url http://127.0.0.1:9 --timeout-s inf",
        "--timeout-s must be a",
    ),
    ("loadgen --trace {d}/ok.csv --url http://127.0.0.1:9 --slo-ms inf", "--slo-ms (a finite"),
    ("loadgen --trace {d}/ok.csv --url http://127.0.0.1:9 --vm-usd-per-hour inf", "finite"),
    ("function-runtime --port 0 --memory-budget-mb 0", "--memory-budget-mb must be >= 64, got 0"),
    ("function-runtime --port 0 --concurrency 0", "--concurrency must be >= 1, got 0"),
    ("function-runtime --port 0 --keep-alive-s -1", "--keep-alive-s must be > 0, got -1"),
    ("model-server --repo {d}/nosuchdir", "model repository {d}/nosuchdir does not exist"),
    ("model-server --repo {d}/ok.csv", "model repository {d}/ok.csv is a file, not a directory"),
    ("model-server --repo {d} --threads 2000", "--threads must be in 1..1024, got 2000"),
    ("export mlp --out {d}/m --seed 99999999999999999999", "--seed must be in 0..2**63-1"),
    ("report --data-dir {d} --slo-ms inf", "--slo-ms must be a finite number > 0"),
    ("report --data-dir {d} --vm-bill-usd inf", "--vm-bill-usd must be a finite number >= 0"),
]


def _run(argv: list[str]) -> int:
    """Exit status of ``tidegate ARGV`` (argparse's own errors exit, the commands' return)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.mark.parametrize(("line", "says"), CASES)
def test_a_bad_value_is_one_line_naming_its_flag(d, capsys, line, says):
    argv, says = line.format(d=d).split(), says.format(d=d)
    rc = _run(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err, err
    *before, last = err.splitlines()  # before: a run's progress lines (the trace's summary)
    assert not [line for line in before if "error" in line.lower()], err
    assert last.startswith(f"tidegate {argv[0]}: error:") and says in last, err


def test_plan_profile_that_is_not_json_names_the_file(d, tmp_path, capsys):
    from vmpool.export import export_zoo

    export_zoo("mlp", tmp_path / "repo")
    for profile, says in (
        (d / "notjson.json", f"--profile {d / 'notjson.json'} is not JSON: Expecting value"),
        (d / "missing.json", f"--profile {d / 'missing.json'}: No such file"),
    ):
        rc = _run(["plan", "mlp", "--repo", str(tmp_path / "repo"), "--profile", str(profile)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith(f"tidegate plan: error: {says}"), err
        assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    ("command", "flag", "says"),
    [
        ("serve", "--log-level", "default warning"),
        ("report", "--format", "table (default)"),
        ("loadgen", "--seed", "default: [trace] seed, else 0"),
        ("loadgen", "--csv", "index, tenant, sent_s"),
        ("tune", "--policy", "slo-aware (default)"),
        ("simulate", "--trace-format", "force the trace format: azure2019, azure2021"),
        ("loadgen", "--trace-format", "gaps or csv (default: told by the first line"),
        ("plan", "--batch", "(default 1)"),
        ("plan", "--objective", "latency (default)"),
        ("function-runtime", "--port", "default 9000"),
        ("function-runtime", "--concurrency", "default 16"),
        ("function-runtime", "--keep-alive-s", "default 300"),
    ],
)
def test_help_explains_each_flag(capsys, command, flag, says):
    assert _run([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    options = text.split(" options: ", 1)[1]
    described = options.split(f" {flag} ", 1)[1][:240]  # its own help, not another flag's
    assert says in described, described


def test_tune_help_does_not_offer_flags_it_ignored(capsys):
    assert _run(["tune", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--plot" not in text and "--param" not in text


def test_serve_banner_with_tenants_shows_where_the_key_goes_and_no_key(tmp_path):
    """With tenants every request needs a key: the printed examples carry the header (before,
    they answered 401), never a real key."""
    from gateway.settings import Settings
    from ops.commands.serve import _banner
    from vmpool.export import export_zoo

    export_zoo("mlp", tmp_path / "models")
    open_settings = Settings.load(None, data_dir=tmp_path, grpc_port=-1)
    assert "Authorization" not in _banner(open_settings, ["mlp"])
    keyed = Settings.load(
        None,
        data_dir=tmp_path,
        grpc_port=-1,
        tenants=[{"name": "acme", "api_keys": ["secret-key"]}],
    )
    text = _banner(keyed, ["mlp"])
    curl = next(line for line in text.splitlines() if "curl" in line)
    python = next(line for line in text.splitlines() if "python -c" in line)
    assert "-H 'Authorization: Bearer KEY'" in curl
    assert "headers={'Authorization':'Bearer KEY'}" in python
    assert "secret-key" not in text


def test_a_two_column_per_second_file_reads_as_counts(tmp_path):
    """docs/ops.md: per-second is "first column the second, last the count". A file of two
    columns was read as CSV with models named "5", "7", "3" (simulate: "requests for 3
    models"); unsorted CSV rows and rows at one instant are each a request."""
    from ops.traces import read_trace

    counts = tmp_path / "per_second.csv"
    counts.write_text("0,5\n1,7\n2,3\n")
    trace = read_trace(counts)
    assert len(trace) == 15 and len(trace.models) == 1
    assert trace.duration_s < 3.0  # three seconds of counts, not one request per line
    rows = tmp_path / "rows.csv"
    rows.write_text("timestamp_s,model\n2.0,mlp\n0.5,mlp\n0.5,mlp\n")
    assert read_trace(rows).arrivals_s.tolist() == [0.5, 0.5, 2.0]


def test_plan_queue_transport_on_a_store_without_queues_is_priced_as_the_store(tmp_path, capsys):
    """docs/transports.md: ``queue`` on a store without queues (the embedded ``dir``) carries
    tensors as ``store`` would, and burst/tensors.py does; the planner priced them as SQS round
    trips (ResNet-18, 4 workers: p50 87.5 ms and "no split pays" against 42.7 ms split)."""
    import json

    from vmpool.export import export_zoo

    export_zoo("resnet18", tmp_path / "repo", size=(64, 64), max_batch_size=2)
    predicted = {}
    for transport in ("store", "queue"):
        argv = ["plan", "resnet18", "--repo", str(tmp_path / "repo"), "--split", "spatial"]
        assert _run([*argv, "--transport", transport, "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        predicted[transport] = (plan["predicted_p50_ms"], plan["cost_usd"])
    assert predicted["queue"] == predicted["store"]


def test_export_mistakes_are_refused_before_exporting_begins(tmp_path, capsys):
    """An imported program took --delay-ms/--per-item-ms and ignored them (exit 0); a missing
    --weights file and a negative delay were refused only after "exporting ..." was printed."""
    import torch

    program = torch.export.export(torch.nn.Linear(8, 4).eval(), (torch.randn(2, 8),))
    torch.export.save(program, tmp_path / "linear.pt2")
    out = str(tmp_path / "models")
    for argv, says in (
        ([str(tmp_path / "linear.pt2"), "--delay-ms", "5"], "--delay-ms: for zoo models only"),
        ([str(tmp_path / "linear.pt2"), "--per-item-ms", "0"], "--per-item-ms: for zoo models"),
        (["resnet50", "--weights", str(tmp_path / "nope.pt")], "nope.pt not found"),
        (["delay", "--delay-ms", "-5"], "--delay-ms and --per-item-ms must be >= 0"),
    ):
        assert _run(["export", *argv, "--out", out]) == 2
        captured = capsys.readouterr()
        assert says in captured.err and len(captured.err.strip().splitlines()) == 1, captured
        assert captured.out == "", captured.out  # nothing started
    assert not (tmp_path / "models").exists()
