"""``tidegate loadgen`` against a gateway with tenants, without their keys: every request is
answered 401. Before, the run printed its summary (attainment 0, "401": n) and exited 0, as
if it had measured something; now one line says why and the status is 1. With the key the
same replay exits 0."""

from __future__ import annotations

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from ops.cli import main

from .conftest import serve_app


@pytest.fixture(scope="module")
def keyed_gateway(model_server, small_repo, tmp_path_factory):
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("walkthrough-loadgen"),
        repo=small_repo,
        grpc_port=-1,
        tenants=[{"name": "acme", "api_keys": ["secret-key"]}],
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.mark.parametrize(
    ("keys", "status", "says"),
    [
        ([], 1, "the gateway refused every request (401 x3): give the tenants' keys"),
        (["--api-key", "wrong"], 1, "refused every request (401 x3)"),
        (["--key", "acme=secret-key"], 0, ""),
    ],
)
def test_a_replay_the_gateway_refuses_entirely_says_so(
    keyed_gateway, tmp_path, capsys, keys, status, says
):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,model,tenant\n0.0,mlp,acme\n0.05,mlp,acme\n0.1,mlp,acme\n")
    argv = ["loadgen", "--trace", str(trace), "--url", keyed_gateway, "--no-progress", *keys]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == status, err
    if says:  # one error line, last; before it at most the note that no keys were given
        *before, last = err.splitlines()
        assert last.startswith("tidegate loadgen: error: ") and says in last, err
        assert all(line.startswith("tidegate loadgen: note: no API keys") for line in before)
        assert len(before) == (0 if keys else 1), err
    else:
        assert "error" not in err, err
