"""The Open Inference Protocol over gRPC, beside HTTP, with the real ``tritonclient.grpc``."""

from __future__ import annotations


import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import serve_app
from .ledger_rows import ledger_rows

KEY_A, KEY_B = "key-a", "key-b"


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """A gateway (HTTP and gRPC on free ports) with two tenants; yields (grpc target, data dir)."""
    data = tmp_path_factory.mktemp("grpc-gw")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        grpc_port=0,
        max_body_mb=1.0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[
            {"name": "a", "api_keys": [KEY_A]},
            {"name": "b", "api_keys": [KEY_B], "rate_per_s": 0.001, "burst": 1},
        ],
    )
    app = create_app(settings)
    with serve_app(app):
        server = app.state.gateway.grpc
        assert server is not None and server.port > 0
        yield f"127.0.0.1:{server.port}", data


def reference(repo, name, x):
    module = load_artifact(repo, name).load_module()
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def client(target):
    return tgrpc.InferenceServerClient(target)


AUTH_A = {"authorization": f"Bearer {KEY_A}"}


def test_health_and_metadata_with_tritonclient(gateway):
    c = client(gateway[0])
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("resnet18") and c.is_model_ready("resnet18", "1")
    meta = c.get_model_metadata("resnet18", as_json=True)
    assert meta["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": ["-1", "3", "64", "64"]}
    ]
    assert c.get_server_metadata().name == "tidegate"
    config = c.get_model_config("resnet18").config
    assert config.max_batch_size == 4 and list(config.input[0].dims) == [3, 64, 64]
    with pytest.raises(InferenceServerException) as err:
        c.get_model_metadata("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("model,shape", [("resnet18", (2, 3, 64, 64)), ("mlp", (3, 784))])
def test_infer_raw_contents_equals_the_exported_program(gateway, small_repo, model, shape):
    target, data = gateway
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # raw_input_contents
    result = client(target).infer(
        model,
        [inp],
        outputs=[tgrpc.InferRequestedOutput("output")],
        headers={"x-api-key": KEY_A},
        request_id="grpc-req-1",
    )
    got = result.as_numpy("output")
    assert np.abs(got - reference(small_repo, model, x)).max() <= 1e-5
    assert result.get_response().id == "grpc-req-1"
    # through the same dispatcher: the ledger has the tenant's row. (Both models' cases send
    # the same id to one gateway: waiting for any row of that id returned the first case's row
    # while this one's was not folded yet, a failure seen under load.)
    rows = ledger_rows(
        data,
        "SELECT tenant, model, path, status FROM requests WHERE id = ? AND model = ?",
        ("grpc-req-1", model),
    )
    assert ("a", model, "vm", 200) in rows


def test_typed_contents_are_accepted(gateway, small_repo):
    target, _ = gateway
    x = np.random.default_rng(2).standard_normal((1, 784)).astype(np.float32)
    request = pb.ModelInferRequest(
        model_name="mlp",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="input",
                datatype="FP32",
                shape=[1, 784],
                contents=pb.InferTensorContents(fp32_contents=x.reshape(-1).tolist()),
            )
        ],
    )
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response, info = call.with_call(request, metadata=tuple(AUTH_A.items()))
    out = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(
        response.outputs[0].shape
    )
    assert np.abs(out - reference(small_repo, "mlp", x)).max() <= 1e-5
    trailing = dict(info.trailing_metadata())
    assert trailing["x-tidegate-path"] == "vm" and float(trailing["x-tidegate-cost-usd"]) >= 0


def _infer_error(target, model="mlp", shape=(1, 784), dtype="FP32", headers=None, data=None):
    x = np.zeros(shape, np.float32) if data is None else data
    inp = tgrpc.InferInput("input", list(shape), dtype)
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as err:
        client(target).infer(model, [inp], headers=headers)
    return err.value


def test_errors_carry_grpc_status_codes(gateway):
    target, _ = gateway
    assert _infer_error(target).status() == "StatusCode.UNAUTHENTICATED"
    assert (
        _infer_error(target, headers={"x-api-key": "wrong"}).status()
        == "StatusCode.UNAUTHENTICATED"
    )
    assert _infer_error(target, model="nope", headers=AUTH_A).status() == "StatusCode.NOT_FOUND"
    bad = _infer_error(target, shape=(1, 5), headers=AUTH_A)
    assert bad.status() == "StatusCode.INVALID_ARGUMENT" and "shape" in bad.message()
    # tenant a may not choose the route
    forced = _infer_error(target, headers={**AUTH_A, "x-tidegate-route": "burst"})
    assert forced.status() == "StatusCode.PERMISSION_DENIED"
    # tenant b's bucket holds one request: the second is refused until it refills
    x = np.zeros((1, 784), np.float32)
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(x)
    client(target).infer("mlp", [inp], headers={"x-api-key": KEY_B})
    limited = _infer_error(target, headers={"x-api-key": KEY_B})
    assert limited.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_message_over_the_body_limit_is_resource_exhausted(gateway):
    target, _ = gateway
    big = np.zeros((4, 3, 224, 224), np.float32)  # 2.4 MB > max_body_mb = 1
    err = _infer_error(target, model="resnet18", shape=big.shape, data=big, headers=AUTH_A)
    assert err.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_statistics_count_grpc_calls(gateway):
    c = client(gateway[0])
    before = c.get_inference_statistics("mlp").model_stats[0]
    x = np.zeros((3, 784), np.float32)
    inp = tgrpc.InferInput("input", [3, 784], "FP32")
    inp.set_data_from_numpy(x)
    c.infer("mlp", [inp], headers={"x-api-key": KEY_A})
    after = c.get_inference_statistics("mlp", as_json=True)["model_stats"][0]
    assert int(after["inference_stats"]["success"]["count"]) == (
        before.inference_stats.success.count + 1
    )
    # an execution of 3 rows, as an HTTP call counts (gRPC calls counted none)
    assert int(after["inference_count"]) == before.inference_count + 3
    assert int(after["execution_count"]) == before.execution_count + 1
    sizes = {int(b["batch_size"]) for b in after["batch_stats"]}
    assert 3 in sizes and 0 not in sizes
    names = {s.name for s in c.get_inference_statistics().model_stats}
    assert names == {"mlp", "resnet18"}


def test_unserved_methods_are_unimplemented(gateway):
    with pytest.raises(InferenceServerException) as err:
        client(gateway[0]).get_system_shared_memory_status()
    assert err.value.status() == "StatusCode.UNIMPLEMENTED"


def test_an_output_asked_twice_is_invalid_argument_as_over_http(gateway):
    x = np.zeros((1, 784), np.float32)
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(x)
    twice = [tgrpc.InferRequestedOutput("output"), tgrpc.InferRequestedOutput("output")]
    with pytest.raises(InferenceServerException) as err:
        client(gateway[0]).infer("mlp", [inp], outputs=twice, headers=AUTH_A)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'output' appears twice" in err.value.message()


def test_model_ready_is_not_found_for_an_unknown_model_or_version(gateway):
    c = client(gateway[0])  # as Triton's ModelReady answers (tests/gateway/test_proto24_ready.py)
    for model, version in (("nope", ""), ("mlp", "9")):
        with pytest.raises(InferenceServerException) as err:
            c.is_model_ready(model, version)
        assert err.value.status() == "StatusCode.NOT_FOUND"
    assert c.is_model_ready("mlp") is True
    extensions = c.get_server_metadata().extensions
    assert {"model_repository", "statistics"} <= set(extensions)


def test_the_repository_needs_the_admin_key_where_tenants_exist(gateway):
    c = client(gateway[0])
    for call in (
        c.get_model_repository_index,
        lambda: c.unload_model("mlp", headers=AUTH_A),
        lambda: c.load_model("mlp", headers=AUTH_A),
    ):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.PERMISSION_DENIED"
        assert "admin key" in err.value.message()
    assert c.is_model_ready("mlp")  # nothing was unloaded


def test_stream_infer_answers_each_request_with_tenants(gateway, small_repo):
    import queue

    c = client(gateway[0])
    answers: queue.Queue = queue.Queue()
    x = np.random.default_rng(5).standard_normal((2, 784)).astype(np.float32)
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    c.start_stream(callback=lambda result, error: answers.put((result, error)), headers=AUTH_A)
    try:
        c.async_stream_infer("mlp", [inp], request_id="one")
        c.async_stream_infer("mlp", [inp], request_id="two")
        got = [answers.get(timeout=60) for _ in range(2)]
    finally:
        c.stop_stream()
    want = reference(small_repo, "mlp", x)
    for (result, error), rid in zip(got, ["one", "two"], strict=True):
        assert error is None and result.get_response().id == rid
        assert np.abs(result.as_numpy("output") - want).max() <= 1e-5
    # without a key, the stream answers the error, as a unary call would refuse
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        c.async_stream_infer("mlp", [inp])
        result, error = answers.get(timeout=60)
    finally:
        c.stop_stream()
    assert result is None and "key" in str(error).lower()


def test_serve_refuses_a_busy_grpc_port_in_one_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from .conftest import ROOT

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ops",
                "serve",
                "--port",
                "0",
                "--grpc-port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], proc.stderr


@pytest.mark.slow
def test_repository_index_load_unload_over_grpc(small_repo, tmp_path):
    from .conftest import running_model_server

    admin = {"authorization": "Bearer admin-secret"}
    with running_model_server(small_repo, tmp_path / "ms.log", "mlp") as replica:
        settings = Settings.load(
            None,
            data_dir=tmp_path / "data",
            repo=small_repo,
            grpc_port=0,
            admin_api_key="admin-secret",
            vm={"provisioner": "static", "urls": [replica]},
            burst={"enabled": False},
        )
        app = create_app(settings)
        with serve_app(app):
            c = client(f"127.0.0.1:{app.state.gateway.grpc.port}")
            with pytest.raises(InferenceServerException) as err:
                c.get_model_repository_index()
            assert err.value.status() == "StatusCode.UNAUTHENTICATED"
            with pytest.raises(InferenceServerException) as err:
                c.get_model_repository_index(headers={"x-api-key": "wrong"})
            assert err.value.status() == "StatusCode.PERMISSION_DENIED"
            index = c.get_model_repository_index(headers=admin).models
            assert {(m.name, m.state) for m in index} == {("mlp", "READY"), ("resnet18", "READY")}
            c.unload_model("mlp", headers=admin)
            assert not_found(lambda: c.is_model_ready("mlp"))  # (as Triton: not served now)
            index = c.get_model_repository_index(headers=admin, as_json=True)["models"]
            assert {m["name"]: m["state"] for m in index}["mlp"] == "UNAVAILABLE"
            x = np.zeros((1, 784), np.float32)
            inp = tgrpc.InferInput("input", [1, 784], "FP32")
            inp.set_data_from_numpy(x)
            with pytest.raises(InferenceServerException) as err:
                c.infer("mlp", [inp])
            assert err.value.status() == "StatusCode.NOT_FOUND"
            with pytest.raises(InferenceServerException) as err:
                c.load_model("mlp", headers=admin, config='{"max_batch_size": 2}')
            assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert not_found(lambda: c.is_model_ready("mlp"))  # (not loaded with another config)
            c.load_model("mlp", headers=admin)
            assert c.is_model_ready("mlp")
            assert c.infer("mlp", [inp]).as_numpy("output").shape == (1, 10)
            with pytest.raises(InferenceServerException) as err:
                c.load_model("nope", headers=admin)
            assert err.value.status() == "StatusCode.NOT_FOUND"
            assert str(small_repo) not in err.value.message()


def test_stream_requests_run_at_once_and_are_answered_in_order():
    """A stream's requests were answered one after another (no two could share a batch);
    now the first waits here until the second has started, and answers still come in order."""
    import asyncio

    from gateway.grpc.stream import answer_in_order

    async def run():
        second_started = asyncio.Event()

        async def answer(request):
            if request == 0:
                await second_started.wait()
            else:
                second_started.set()
            return f"answer {request}"

        async def requests():
            for i in range(3):
                yield i

        return [a async for a in answer_in_order(requests(), answer)]

    assert asyncio.run(asyncio.wait_for(run(), 60)) == ["answer 0", "answer 1", "answer 2"]


def not_found(call) -> bool:
    """Whether ``call`` raised tritonclient's NOT_FOUND."""
    try:
        call()
    except InferenceServerException as exc:
        return exc.status() == "StatusCode.NOT_FOUND"
    return False
