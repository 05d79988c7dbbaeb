"""Config mistakes a careless operator makes, in the settings, the environment, the flags and the
model repository: each is refused with one line naming it (no traceback, no silent default)."""

from __future__ import annotations

import argparse
import zipfile

import pytest
from pydantic import ValidationError

from gateway.settings import Settings, UnknownSetting, describe_error
from ops.cli import CliError, main
from ops.commands import serve_checks
from vmpool.artifact import ArtifactError, config_from_dict

REFUSED = [
    # (TOML, words the one line carries)
    ("max_body_mb = inf\n", ["max_body_mb", "finite"]),
    ("body_timeout_s = inf\n", ["body_timeout_s", "finite"]),
    ("[vm]\nrequest_timeout_s = inf\n", ["vm.request_timeout_s", "finite"]),
    ("[burst]\nkeep_alive_s = inf\n", ["burst.keep_alive_s", "finite"]),
    ("[burst]\ntimeout_s = 1000\n", ["burst.timeout_s", "900"]),
    ("[autoscaling]\nmin_replicas = 3\n", ["autoscaling", "needs policy = one of none, target"]),
    ("[burst.platform]\nendpoint = 'http://x'\n", ["needs kind = one of local, aws_lambda"]),
    ("[[tenants]]\nname = 'a'\nrate_per_s = inf\n", ["tenants.0.rate_per_s", "finite"]),
    ("[autoscaling]\npolicy = 'target'\ntarget_in_flight_per_replica = inf\n", ["finite"]),
    ("[vm]\nreplicas = 100000000\n", ["vm.replicas", "10000"]),
    ('host = ""\n', ["host"]),
    ("port = true\n", ["port must be a number, got true"]),
    ("[vm]\nreplicas = false\n", ["vm", "replicas must be a number, got false"]),
    ('admin_api_key = ""\n', ["admin_api_key"]),
    ('repo = ""\n', ["repo", "empty"]),
    ('redis_url = "http://cache:6379"\n', ["redis_url", "redis://"]),
    ("[vm]\nprovisioner = 'static'\n", ["vm.urls"]),
    ("[vm]\nprovisioner = 'static'\nurls = ['model-server:8000']\n", ["not an http"]),
    ("[vm]\nprovisioner = 'ec2'\n", ["[vm.ec2] group"]),
    ("[vm]\nprovisioner = 'kubernetes'\n", ["[vm.kubernetes] deployment"]),
    ("[vm.ec2]\nurl_template = 'http://{private_ipp}:8000'\n", ["url_template", "private_ip"]),
    ("[async_queue]\nbackend = 'redis'\n", ["needs redis_url"]),
    ("routing_policy = 'burst-only'\n[burst]\nenabled = false\n", ["burst.enabled = true"]),
    ("[vm]\nreplicas = 0\n[burst]\nenabled = false\n", ["nothing would serve"]),
    (
        "[async_queue]\nenabled = false\n[[tenants]]\nname = 'b'\nslo_class = 'async'\n",
        ["tenant 'b'", "async_queue is off"],
    ),
    ("[burst]\ndefault_workers = 32\n", ["default_workers (32)", "max_workers (16)"]),
    ("[burst.platform]\nkind = 'local'\nendpoint = 'localhost:9000'\n", ["endpoint", "http"]),
    ("[burst.store]\nkind = 's3'\nbucket = ''\n", ["burst.store.s3.bucket"]),
    ("[burst.store]\nkind = 'dir'\nroot = ''\n", ["burst.store.dir.root"]),
    (
        "[autoscaling]\npolicy = 'knative'\nstable_window_s = 5\npanic_window_s = 30\n",
        ["panic_window_s", "stable_window_s"],
    ),
    ("[[tenants]]\nname = 'a'\n[[tenants]]\nname = 'a'\n", ["two tenants are named 'a'"]),
    (
        "[[tenants]]\nname = 'a'\napi_keys = ['k1']\n[[tenants]]\nname = 'b'\napi_keys = ['k1']\n",
        ["'a' and 'b' share an API key"],
    ),
    ("[[tenants]]\nname = 'a'\napi_keys = ['']\n", ["api_keys", "empty"]),
    ("cors_origins = ['']\n", ["cors origin ''"]),
    ("cors_origins = ['https://app.example.com/']\n", ["no trailing slash"]),
    ("cors_origins = ['app.example.com']\n", ["scheme://host"]),
]


@pytest.mark.parametrize("text, words", REFUSED, ids=[w[0] for _, w in REFUSED])
def test_a_setting_that_makes_no_sense_is_refused_in_one_line(tmp_path, monkeypatch, text, words):
    for key in [k for k in __import__("os").environ if k.upper().startswith("TIDEGATE_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "tidegate.toml"
    config.write_text(text)
    with pytest.raises((ValidationError, UnknownSetting)) as caught:
        Settings.load(config)
    line = describe_error(caught.value)
    assert "\n" not in line and "Value error" not in line, line
    for word in words:
        assert word in line, line


def _args(**given) -> argparse.Namespace:
    fields = ("config", "host", "port", "grpc_port", "data_dir", "repo", "replicas")
    return argparse.Namespace(**{name: given.get(name) for name in fields})


@pytest.mark.parametrize(
    "content, says",
    [
        (b"[vm]\nreplicas = 2\nport = \n", "line 3"),
        (b'{"port": 8000}\n', "not valid TOML"),
        (b"\xff\xfe[vm]\n", "not UTF-8"),
    ],
)
def test_a_settings_file_that_is_not_toml_is_one_line(tmp_path, content, says):
    config = tmp_path / "tidegate.toml"
    config.write_bytes(content)
    with pytest.raises(CliError, match="cannot read settings") as caught:
        serve_checks.load_settings(_args(config=config))
    assert says in str(caught.value)


def test_a_settings_file_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(CliError, match="cannot read settings .*: Is a directory"):
        serve_checks.load_settings(_args(config=tmp_path))


def test_an_environment_value_that_is_not_json_is_one_line(monkeypatch):
    monkeypatch.setenv("TIDEGATE_CORS_ORIGINS", "*")
    with pytest.raises(CliError, match=r"cors_origins.*JSON"):
        serve_checks.load_settings(_args())


def test_an_empty_repo_variable_is_not_the_current_directory(monkeypatch):
    monkeypatch.setenv("TIDEGATE_REPO", "")
    with pytest.raises(CliError, match="invalid setting repo: is empty"):
        serve_checks.load_settings(_args())


def test_the_same_port_for_http_and_grpc_is_refused(tmp_path):
    settings = Settings.load(None, port=18123, grpc_port=18123, data_dir=tmp_path)
    with pytest.raises(CliError, match="both 18123"):
        serve_checks.grpc_beside_http(settings)


def test_http_on_grpcs_default_port_leaves_grpc_off_rather_than_failing():
    settings = Settings.load(None, port=8001)  # Triton's gRPC port, gRPC left at its default
    assert serve_checks.grpc_beside_http(settings).grpc_port == -1


def test_http_on_a_free_port_puts_grpc_on_one_too_unless_it_is_given(tmp_path):
    assert serve_checks.grpc_beside_http(Settings.load(None, port=0)).grpc_port == 0
    given = Settings.load(None, port=0, grpc_port=18124)
    assert serve_checks.grpc_beside_http(given).grpc_port == 18124
    off = Settings.load(None, port=0, grpc_port=-1)
    assert serve_checks.grpc_beside_http(off).grpc_port == -1


def test_a_data_dir_or_repository_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(CliError, match="data directory .* is a file"):
        serve_checks.prepare_data_dir(Settings.load(None, data_dir=afile))
    with pytest.raises(CliError, match="repository .* is a file"):
        serve_checks.ensure_models(Settings.load(None, data_dir=tmp_path, repo=afile))


def test_an_unknown_demo_model_is_one_line_before_any_export(tmp_path, capsys):
    settings = Settings.load(None, data_dir=tmp_path, demo_model="resnet19")
    with pytest.raises(CliError, match="demo_model: unknown zoo model 'resnet19'"):
        serve_checks.ensure_models(settings)
    assert "exporting" not in capsys.readouterr().out


MODEL = {
    "name": "m",
    "max_batch_size": 8,
    "slo_ms": 50.0,
    "batching": {"max_queue_delay_ms": 2.0},
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


@pytest.mark.parametrize(
    "change, says",
    [
        ({"max_batch_sise": 8}, "unknown key 'max_batch_sise' (did you mean max_batch_size?)"),
        ({"max_batch_size": "abc"}, "max_batch_size must be an integer >= 1"),
        ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
        ({"slo_ms": -5}, "slo_ms must be a number > 0"),
        ({"slo_ms": float("nan")}, "slo_ms must be a number > 0"),
        ({"batching": {"max_queue_delay": 1}}, "[batching]: unknown key 'max_queue_delay'"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shap": [4]}]}, "did you mean shape?"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, "a"]}]}, "shape must be"),
        ({"outputz": []}, "did you mean outputs?"),
    ],
)
def test_a_model_config_typo_is_an_error_not_a_default(change, says):
    with pytest.raises(ArtifactError) as caught:
        config_from_dict({**MODEL, **change}, "m")
    assert says in str(caught.value)


def test_model_metadata_beside_the_config_is_kept():
    cfg = config_from_dict({**MODEL, "source": "zoo:mlp", "delay_ms": 5.0}, "m")
    assert cfg.extra == {"source": "zoo:mlp", "delay_ms": 5.0}


def test_a_truncated_or_foreign_model_file_is_one_line_before_start(tmp_path):
    from vmpool.artifact import config_to_toml

    model = tmp_path / "repo" / "m"
    model.mkdir(parents=True)
    (model / "config.toml").write_text(config_to_toml(config_from_dict(MODEL, "m")))
    (model / "model.pt2").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CliError, match="not a readable model.pt2"):
        serve_checks.check_model(tmp_path / "repo", "m")
    with zipfile.ZipFile(model / "model.pt2", "w") as archive:
        archive.writestr("m/data.bin", b"x" * 1000)
    raw = bytearray((model / "model.pt2").read_bytes())
    raw[raw.index(b"x" * 10)] = ord("y")  # one byte of the member changed: its CRC fails
    (model / "model.pt2").write_bytes(bytes(raw))
    with pytest.raises(CliError, match="corrupt"):
        serve_checks.check_model(tmp_path / "repo", "m")


FLAGS = [
    ("serve --port abc", "argument --port: invalid int value"),
    ("serve --bogus", "tidegate serve: error: unrecognized arguments: --bogus"),
    ("plan", "the following arguments are required"),
    ("model-server", "the following arguments are required: --repo"),
    ("function-runtime --keep-alive-s nan", "--keep-alive-s: must be a finite number"),
    ("function-runtime --port 70000", "--port must be in 0..65535"),
    ("function-runtime --function f=m:h,timeout_s=inf", "timeout_s must be a number"),
    ("model-server --repo {repo} --max-queue-delay-ms nan", "--max-queue-delay-ms"),
    ("model-server --repo {repo} --drain-timeout-s -1", "--drain-timeout-s"),
    ("export mlp --out {repo} --slo-ms nan", "--slo-ms: must be a finite number"),
    ("export delay --out {repo} --delay-ms inf", "--delay-ms: must be a finite number"),
    ("export mlp --out {repo} --name=", "--name: invalid model name ''"),
    ("profile mlp --repo {repo} --out /proc/nope/profile.json", "--out /proc/nope/profile.json"),
]


@pytest.mark.parametrize("argv, says", FLAGS)
def test_a_flag_mistake_is_one_line_and_status_2(tmp_path, capsys, monkeypatch, argv, says):
    async def serve_nothing(runtime) -> None:  # a flag let through ends the run, not the test
        return None

    monkeypatch.setattr("ops.commands.function_runtime._serve", serve_nothing)
    try:
        rc = main(argv.format(repo=tmp_path).split())
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], captured.err
    assert "usage:" not in captured.err and not captured.out


def test_every_command_keeps_its_help(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])
    assert caught.value.code == 0 and "--data-dir" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, says",
    [
        ('[ledger]\nurl = "{d}"\n', "ledger.url: {d} is a directory"),
        ('[ledger]\nurl = "{f}/ledger.sqlite"\n', "ledger.url: cannot use {f}"),
        ('[burst.store]\nkind = "dir"\nroot = "{f}/objects"\n', "burst.store.root: cannot use"),
    ],
)
def test_a_ledger_or_store_place_that_cannot_be_used_is_one_line(tmp_path, text, says):
    afile = tmp_path / "afile"
    afile.write_text("x")
    config = tmp_path / "tidegate.toml"
    config.write_text(text.format(d=tmp_path, f=afile))
    settings = Settings.load(config, data_dir=tmp_path / "data")
    with pytest.raises(CliError, match="invalid setting " + says.format(d=tmp_path, f=afile)):
        serve_checks.prepare_data_dir(settings)


def test_a_model_config_naming_another_model_is_refused(tmp_path):
    from vmpool.artifact import config_to_toml, load_artifact

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.toml").write_text(config_to_toml(config_from_dict({**MODEL, "name": "n"})))
    (model / "model.pt2").write_bytes(b"")
    with pytest.raises(ArtifactError, match="name 'n' is not its directory's"):
        load_artifact(tmp_path, "m")


def test_a_second_gateway_on_one_data_directory_is_refused_whatever_its_ledger(tmp_path):
    import os

    settings = Settings.load(None, data_dir=tmp_path, ledger={"journal": False})
    serve_checks.prepare_data_dir(settings)  # the first gateway's
    try:
        with pytest.raises(CliError, match=f"in use by another gateway \\(pid {os.getpid()}\\)"):
            serve_checks.prepare_data_dir(settings)
    finally:
        while serve_checks.HELD:
            os.close(serve_checks.HELD.pop())
    serve_checks.prepare_data_dir(settings)  # free again once the first is gone
    os.close(serve_checks.HELD.pop())


def test_a_home_directory_in_the_settings_file_is_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "tidegate.toml"
    config.write_text('data_dir = "~/tidegate"\nrepo = "~/models"\n')
    settings = Settings.load(config)
    assert (settings.data_dir, settings.repo) == (tmp_path / "tidegate", tmp_path / "models")


def test_a_model_copied_in_part_is_named_not_skipped(tmp_path):
    (tmp_path / "repo" / "m").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "model.pt2").write_bytes(b"")
    settings = Settings.load(None, data_dir=tmp_path, repo=tmp_path / "repo")
    with pytest.raises(CliError, match="model m has no config.toml"):
        serve_checks.ensure_models(settings)


@pytest.mark.parametrize(
    "name, hint",
    [
        ("TIDEGATE_VM_REPLICAS", "TIDEGATE_VM__REPLICAS"),
        ("TIDEGATE_BURST_PLATFORM__KIND", "TIDEGATE_BURST__PLATFORM__KIND"),
        ("TIDEGATE_PORT_X", "TIDEGATE_PORT"),
    ],
)
def test_one_underscore_for_two_is_pointed_out(monkeypatch, name, hint):
    monkeypatch.setenv(name, "2")
    with pytest.raises(
        CliError, match=f"unknown environment variable {name} .did you mean {hint}."
    ):
        serve_checks.load_settings(_args())


def test_tidegates_own_process_variables_are_not_settings_mistakes(monkeypatch):
    """A benchmark run with TIDEGATE_BENCH_KEEP=1 starts `tidegate serve` in that environment."""
    monkeypatch.setenv("TIDEGATE_BENCH_KEEP", "1")
    monkeypatch.setenv("TIDEGATE_FUNCTION_THREADS", "2")
    assert serve_checks.load_settings(_args()).vm.replicas == 1
