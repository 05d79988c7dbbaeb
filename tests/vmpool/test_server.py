"""The model server over real loopback HTTP, started as `tidegate model-server` in a subprocess."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import select
import signal
import socket
import subprocess
import time
from argparse import Namespace

import httpx
import numpy as np
import orjson
import pytest
import torch

from ops.cli import CliError, main as tidegate_main
from ops.commands import model_server as model_server_cmd
from vmpool.artifact import load_artifact
from vmpool.codec import HEADER_LENGTH, decode_response, encode_request
from vmpool.procs import model_server_command

READY_RE = re.compile(
    r"^tidegate model-server ready on (http://127\.0\.0\.1:\d+) \(models: (.*)\)$"
)


class ServerProcess:
    def __init__(self, repo, *extra: str):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            model_server_command(repo, 0, extra=extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # a bound, not a timing: a model server importing torch on a starved host took over 60 s
        ready, _, _ = select.select([self.proc.stdout], [], [], 300)
        line = self.proc.stdout.readline().strip() if ready else ""
        match = READY_RE.match(line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.url, self.models = match.group(1), match.group(2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server(model_repo):
    srv = ServerProcess(model_repo, "--max-body-mb", "0.05", "--max-queue-delay-ms", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _local(repo, name, *args):
    module = load_artifact(repo, name).load_module()
    with torch.inference_mode():
        out = module(*(torch.from_numpy(a) for a in args))
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def test_metadata_and_health(server, client):
    assert server.models == "embed, mlp, pair"
    meta = client.get("/v2").json()
    assert meta["name"] == "tidegate-model-server" and "binary_tensor_data" in meta["extensions"]
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    model = client.get("/v2/models/pair").json()
    assert model["name"] == "pair" and model["versions"] == ["1"] and model["platform"]
    assert model["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 2, 3]},
        {"name": "b", "datatype": "INT64", "shape": [-1, 3]},
    ]
    assert model["outputs"][1] == {"name": "m", "datatype": "INT64", "shape": [-1]}
    assert client.get("/v2/models/pair/versions/1").json() == model
    assert client.get("/v2/models/mlp/ready").status_code == 200
    assert client.get("/v2/models/mlp/versions/1/ready").status_code == 200


def test_health_bodies_config_stats_repository_and_405(server, client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    config = client.get("/v2/models/pair/config").json()
    assert config["max_batch_size"] == 8 and config["input"][1] == {
        "name": "b",
        "data_type": "TYPE_INT64",
        "dims": [3],
    }
    x = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8}]}
    )
    before = client.get("/v2/models/mlp/stats").json()["model_stats"][0]
    assert client.post("/v2/models/mlp/infer", content=x).status_code == 200
    after = client.get("/v2/models/mlp/stats").json()["model_stats"][0]
    assert after["inference_count"] == before["inference_count"] + 2
    assert after["execution_count"] == before["execution_count"] + 1
    assert (
        after["inference_stats"]["success"]["count"]
        == before["inference_stats"]["success"]["count"] + 1
    )
    r = client.get("/v2/models/mlp/infer")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    index = client.post("/v2/repository/index").json()
    assert {row["name"]: row["state"] for row in index} == {
        "embed": "READY",
        "mlp": "READY",
        "pair": "READY",
    }
    assert client.post("/v2/repository/models/embed/unload").status_code == 200
    r = client.post("/v2/models/embed/infer", content=b"{}")
    assert r.status_code == 404 and "not loaded (unloaded)" in r.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200  # still ready, as Triton
    assert client.post("/v2/repository/models/embed/load").status_code == 200
    assert client.get("/v2/models/embed/ready").status_code == 200
    r = client.post("/v2/repository/models/nope/load")
    assert r.status_code == 404 and "not found" in r.json()["error"]
    # a load request's body is a few parameters: a large one is refused, declared or streamed
    big = b'{"parameters": {"x": "' + b"a" * (1 << 20) + b'"}}'
    r = client.post("/v2/repository/models/embed/load", content=big)
    assert r.status_code == 413 and "over" in r.json()["error"]
    r = client.post("/v2/repository/models/embed/load", content=iter([big[:4096], big[4096:]]))
    assert r.status_code == 413
    assert client.post("/v2/repository/models/embed/load", json={}).status_code == 200


def test_json_infer_equals_the_program_run_locally(model_repo, client):
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    r = client.post(
        "/v2/models/mlp/infer",
        content=orjson.dumps(
            {
                "id": "j1",
                "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": x.tolist()}],
            }
        ),
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["model_name"] == "mlp" and body["model_version"] == "1" and body["id"] == "j1"
    out = body["outputs"][0]
    assert out["shape"] == [3, 3] and out["datatype"] == "FP32"
    (expected,) = _local(model_repo, "mlp", x)
    assert np.abs(np.array(out["data"], np.float32).reshape(3, 3) - expected).max() <= 1e-5


def test_binary_infer_with_mixed_outputs_equals_the_program(model_repo, client):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 2, 3)).astype(np.float32)
    b = rng.integers(-5, 5, (2, 3)).astype(np.int64)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [2, 2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": a.nbytes},
                },
                {"name": "b", "shape": [2, 3], "datatype": "INT64", "data": b.tolist()},
            ],
            "outputs": [{"name": "s", "parameters": {"binary_data": True}}, {"name": "m"}],
        }
    )
    r = client.post(
        "/v2/models/pair/versions/1/infer",
        content=header + a.tobytes(),
        headers={HEADER_LENGTH: str(len(header))},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    resp = decode_response(r.content, int(r.headers[HEADER_LENGTH]))
    s, m = _local(model_repo, "pair", a, b)
    assert np.abs(resp.outputs["s"] - s).max() <= 1e-5
    assert resp.outputs["m"].tolist() == m.tolist()
    only_m = orjson.loads(r.content[: int(r.headers[HEADER_LENGTH])])["outputs"][1]
    assert only_m["data"] == m.tolist()  # the JSON output stayed JSON

    body, hl = encode_request({"a": a, "b": b})  # the gateway's hop: everything binary
    r = client.post("/v2/models/pair/infer", content=body, headers={HEADER_LENGTH: str(hl)})
    resp = decode_response(r.content, int(r.headers[HEADER_LENGTH]))
    assert list(resp.outputs) == ["s", "m"] and np.abs(resp.outputs["s"] - s).max() <= 1e-5


def test_tritonclient_works_unchanged(model_repo, server):
    import tritonclient.http as triton

    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    c = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("mlp")
        assert c.get_model_metadata("mlp")["inputs"][0]["shape"] == [-1, 4]
        inp = triton.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        got = c.infer("mlp", [inp]).as_numpy("y")
        inp.set_data_from_numpy(x, binary_data=False)
        got_json = c.infer(
            "mlp", [inp], outputs=[triton.InferRequestedOutput("y", binary_data=False)]
        ).as_numpy("y")
    finally:
        c.close()
    (expected,) = _local(model_repo, "mlp", x)
    assert np.abs(got - expected).max() <= 1e-5 and np.abs(got_json - expected).max() <= 1e-5


@pytest.mark.parametrize(
    "path,body,headers,status,message",
    [
        ("/v2/models/nope/infer", b"{}", {}, 404, "unknown model 'nope'"),
        ("/v2/models/mlp/versions/7/infer", b"{}", {}, 404, "no version '7'"),
        ("/v2/models/mlp/infer", b"{oops", {}, 400, "malformed JSON"),
        (
            "/v2/models/mlp/infer",
            orjson.dumps(
                {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}]}
            ),
            {},
            400,
            "shape [1, 5] does not match [-1, 4]",
        ),
        (
            "/v2/models/mlp/infer",
            orjson.dumps(
                {"inputs": [{"name": "x", "shape": [9, 4], "datatype": "FP32", "data": [0] * 36}]}
            ),
            {},
            400,
            "exceeds max_batch_size 8",
        ),
        (
            "/v2/models/mlp/infer",
            b'{"inputs": []}',
            {HEADER_LENGTH: "99"},
            400,
            "Inference-Header-Content-Length is 99",
        ),
        (
            "/v2/models/mlp/infer",
            b'{"inputs": []}',
            {HEADER_LENGTH: "x"},
            400,
            "must be an integer",
        ),
        ("/v2/models/mlp/infer", b"x" * 60_000, {}, 413, "over the limit"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_stays_live(
    client, path, body, headers, status, message
):
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status and message in r.json()["error"]
    assert client.get("/v2/health/live").status_code == 200


def test_an_id_outside_the_embedding_is_a_400_with_the_reason_and_the_next_request_works(client):
    """(It was the model's own IndexError, a 500; the ids are checked against the table since
    766bba5.)"""

    def ids(values):
        return orjson.dumps(
            {"inputs": [{"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": values}]}
        )

    r = client.post("/v2/models/embed/infer", content=ids([1, 99]))
    assert r.status_code == 400 and "value 99 is outside" in r.json()["error"], r.text
    r = client.post("/v2/models/embed/infer", content=ids([1, 4]))
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 2, 3]


def test_chunked_upload_over_the_limit_is_413_and_unknown_routes_are_404(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 4096

    r = client.post("/v2/models/mlp/infer", content=chunks())
    assert r.status_code == 413 and "over the limit" in r.json()["error"]
    assert r.headers["connection"] == "close"
    r = client.get("/v2/nothing/here")
    assert r.status_code == 404 and "error" in r.json()
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/health/live").status_code == 200


def test_metrics_expose_the_series(client):
    x = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    )
    assert client.post("/v2/models/mlp/infer", content=x).status_code == 200
    client.post("/v2/models/mlp/infer", content=b"{")
    text = client.get("/metrics").text
    assert 'tidegate_model_queue_depth{model="mlp"} 0.0' in text
    assert re.search(r'tidegate_model_requests_total\{code="200",model="mlp"\} [1-9]', text)
    assert re.search(r'tidegate_model_requests_total\{code="400",model="mlp"\} [1-9]', text)
    assert re.search(r'tidegate_model_batch_size_count\{model="mlp"\} [1-9]', text)
    assert re.search(
        r'tidegate_model_inference_seconds_bucket\{le="\+Inf",model="mlp"\} [1-9]', text
    )


async def test_sigterm_drains_in_flight_work_then_exits_zero(model_repo):
    # A long batching delay keeps the first request in the queue while we send SIGTERM: it
    # waits for a companion because a second request is still arriving (a lone request would
    # run at once). The second one's body never completes; it leaves when the test closes it.
    srv = ServerProcess(model_repo, "--model", "mlp", "--max-queue-delay-ms", "1500")
    try:
        body = orjson.dumps(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        )
        _, arriving = await asyncio.open_connection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]))
        arriving.write(
            b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: x\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body[:10]
        )
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            first = asyncio.ensure_future(c.post("/v2/models/mlp/infer", content=body))
            deadline = time.monotonic() + 10
            queued = 'tidegate_model_queue_depth{model="mlp"} 1.0'
            while queued not in (await c.get("/metrics")).text:
                assert time.monotonic() < deadline, "request never reached the queue"
                await asyncio.sleep(0.02)
            srv.proc.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as fresh:
                # the server's loop takes the signal on its own time: wait for it to stop
                # being ready (a late POST sent before that would be a companion, not refused)
                while (not_ready := await fresh.get("/v2/health/ready")).status_code == 200:
                    assert time.monotonic() < deadline, "SIGTERM never stopped readiness"
                    await asyncio.sleep(0.005)
                late = await fresh.post("/v2/models/mlp/infer", content=body)
            assert late.status_code == 503 and "draining" in late.json()["error"]
            assert not_ready.status_code == 503
            assert not first.done()
            arriving.close()
            done = await first
            assert done.status_code == 200 and len(done.json()["outputs"][0]["data"]) == 3
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
    finally:
        srv.stop()


def test_cli_rejects_unknown_models_and_empty_repos(model_repo, tmp_path):
    def args(repo, models=None):
        return Namespace(
            repo=str(repo),
            models=models,
            host="127.0.0.1",
            port=0,
            threads=1,
            max_batch_size=None,
            max_queue_delay_ms=None,
            max_body_mb=64.0,
            max_inflight_body_mb=1024.0,
            body_timeout_s=60.0,
            drain_timeout_s=30.0,
        )

    with pytest.raises(CliError, match="model 'nope' not found"):
        model_server_cmd.run(args(model_repo, ["nope"]))
    with pytest.raises(CliError, match="no models in repository"):
        model_server_cmd.run(args(tmp_path))
    assert tidegate_main(["model-server", "--repo", str(tmp_path), "--port", "0"]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = args(model_repo, ["mlp"])
        busy.port = taken.getsockname()[1]
        frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
        with pytest.raises(CliError, match="cannot listen on 127.0.0.1"):
            model_server_cmd.run(busy)
    # a server that could not listen leaves its caller's gc as it was (not frozen, as a serving one)
    assert (gc.get_freeze_count(), gc.get_threshold()) == (frozen, thresholds)
