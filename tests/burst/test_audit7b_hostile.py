"""Hostile plan inputs through the gateway (issue 7's audit, s13): ``X-Tidegate-Workers`` out of
range or not ASCII digits, a batch over the model's max_batch_size on the burst route, and the
burst route asked of a gateway whose config disables it. Each is a 4xx with ``{"error": ...}``
that leaves the burst service as it was (no plan made, no instance held). A disabled burst path
once answered 503 with ``Retry-After: 1``: a client retried for ever what the config refuses."""

from __future__ import annotations

import json
import socket

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.conftest import running_model_server, serve_app
from vmpool.export import export_zoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("a7b-hostile")
    export_zoo("mlp", root, max_batch_size=1)
    export_zoo("mlp", root, artifact_name="mlp4", max_batch_size=4)
    return root


@pytest.fixture(scope="module")
def vm(repo, tmp_path_factory):
    with running_model_server(repo, tmp_path_factory.mktemp("a7b-hostile-ms") / "ms.log") as url:
        yield url


def _settings(repo, vm, data, enabled: bool) -> Settings:
    return Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [vm]},
        burst={"enabled": enabled, "max_workers": 8, "default_workers": 2},
    )


def post(url: str, model: str, rows: int, headers: dict[str, bytes]):
    """(status, JSON body, headers) of a JSON infer POST whose header bytes are sent as given
    (clients refuse to send some of these values)."""
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [rows, 784],
                    "datatype": "FP32",
                    "data": [0.5] * (784 * rows),
                }
            ]
        }
    ).encode()
    extra = b"".join(k.encode() + b": " + v + b"\r\n" for k, v in headers.items())
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(
            b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
            % (model.encode(), extra, len(body))
            + body
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    got = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), json.loads(rest), got


BURST = {"X-Tidegate-Route": b"burst"}


def test_hostile_worker_counts_and_batches_are_4xx_and_leave_the_burst_path_as_it_was(
    repo, vm, tmp_path
):
    app = create_app(_settings(repo, vm, tmp_path, enabled=True))
    with serve_app(app) as url:
        status, ok, _ = post(url, "mlp4", 1, {**BURST, "X-Tidegate-Workers": b"2"})
        assert status == 200
        service = app.state.gateway.burst
        plans, free = set(service._plans), service.free_concurrency()
        for workers in (b"0", b"-1", b"99999", b"9", "٣".encode(), "２".encode(), b"", b"1e1"):
            status, error, headers = post(url, "mlp4", 1, {**BURST, "X-Tidegate-Workers": workers})
            assert status == 400 and error["error"], (workers, error)
            assert "retry-after" not in headers
        for model, rows in (("mlp", 4), ("mlp4", 5)):  # max_batch_size 1 and 4
            status, error, _ = post(url, model, rows, BURST)
            assert status == 400 and "max_batch_size" in error["error"], error
        assert set(service._plans) == plans and service.free_concurrency() == free
        # whitespace around a header value is not part of it (RFC 9110 5.5): the same request
        for padded in (b"2 ", b" 2", b"2\t"):
            status, got, _ = post(url, "mlp4", 1, {**BURST, "X-Tidegate-Workers": padded})
            assert status == 200 and got["outputs"] == ok["outputs"], padded


def test_the_burst_route_on_a_gateway_with_burst_disabled_is_a_400_not_a_retry(repo, vm, tmp_path):
    with serve_app(create_app(_settings(repo, vm, tmp_path, enabled=False))) as url:
        for headers in (BURST, {**BURST, "X-Tidegate-Workers": b"3"}):
            status, error, got = post(url, "mlp4", 1, headers)
            assert status == 400 and "disabled" in error["error"], error
            assert "retry-after" not in got
        status, _, _ = post(url, "mlp4", 1, {"X-Tidegate-Route": b"vm"})
        assert status == 200
