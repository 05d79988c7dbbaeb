"""What the real clients reach for at the edges, against a gateway on loopback (HTTP and gRPC):
a gRPC call whose deadline passes before the model answers, Triton extensions this server does
not serve, an empty list of requested outputs, and clients of both protocols at one instant."""

from __future__ import annotations

import logging
import re
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.grpc.servicer import SERVICE
from gateway.settings import Settings
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo

from .conftest import running_model_server, serve_app
from .ledger_rows import ledger_rows

KEY = {"x-api-key": "key-a"}
ROWS, PER_ROW_MS = 3, 500.0  # the delay model waits 1.5 s a request: far past the deadline below
# (per row: the replica's warm-up, two batch-1 calls at its start, waits 2 x 0.5 s, not 2 x 1.5 s)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """(HTTP base URL, gRPC target, data dir, mlp module): the mlp and a model that waits
    1.5 s a request, one model server, a gateway with one tenant."""
    root = tmp_path_factory.mktemp("clients-edges")
    repo = root / "repo"
    export_zoo("mlp", repo)
    export_zoo("delay", repo, options={"delay_ms": 0.0, "per_item_ms": PER_ROW_MS})
    with running_model_server(repo, root / "ms.log") as replica:
        settings = Settings.load(
            None,
            data_dir=root / "data",
            repo=repo,
            grpc_port=0,
            vm={"provisioner": "static", "urls": [replica]},
            burst={"enabled": False},
            tenants=[{"name": "a", "api_keys": ["key-a"]}],
        )
        app = create_app(settings)
        with serve_app(app) as url:
            module = load_artifact(repo, "mlp").load_module()
            yield url, app.state.gateway.grpc.target, root / "data", module


def counts(url: str) -> dict[tuple[str, str, str], float]:
    """tidegate_requests_total by (model, path, code), summed over tenants."""
    out: dict[tuple[str, str, str], float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("tidegate_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels["model"], labels["path"], labels["code"])
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def reference(module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def test_a_grpc_call_past_its_deadline_is_still_accounted(gateway):
    """The client gets DEADLINE_EXCEEDED at its deadline; the replica computes the request
    anyway, so the gateway lets it finish: a ledger row with its cost, the tenant charged, one
    count with its path (the dispatch was cancelled: no row, no charge, a free answer's work,
    counted as a refusal that was never routed)."""
    url, target, data, _ = gateway
    before = counts(url)
    inp = tgrpc.InferInput("input", [ROWS, 16], "FP32")
    inp.set_data_from_numpy(np.ones((ROWS, 16), np.float32))
    client = tgrpc.InferenceServerClient(target)
    with pytest.raises(InferenceServerException) as err:
        client.infer("delay", [inp], headers=KEY, request_id="late-1", client_timeout=0.3)
    assert err.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    rows = ledger_rows(
        data, "SELECT status, path, tenant, cost_usd FROM requests WHERE id = 'late-1'"
    )
    assert len(rows) == 1 and rows[0][:3] == (200, "vm", "a") and rows[0][3] > 0, rows
    after = counts(url)
    assert after.get(("delay", "vm", "200"), 0) - before.get(("delay", "vm", "200"), 0) == 1
    assert after.get(("delay", "none", "504"), 0) == before.get(("delay", "none", "504"), 0)
    got = client.infer("delay", [inp], headers=KEY, client_timeout=60).as_numpy("output")
    assert np.array_equal(got, np.ones((ROWS, 16), np.float32))  # and the next call is answered


UNSUPPORTED_HTTP = {
    "system shared memory": [
        ("GET", "/v2/systemsharedmemory/status"),
        ("POST", "/v2/systemsharedmemory/region/r/register"),
        ("POST", "/v2/systemsharedmemory/unregister"),
    ],
    "CUDA shared memory": [
        ("GET", "/v2/cudasharedmemory/region/r/status"),
        ("POST", "/v2/cudasharedmemory/region/r/unregister"),
    ],
    "trace": [
        ("GET", "/v2/trace/setting"),
        ("POST", "/v2/models/mlp/trace/setting"),
        ("GET", "/v2/models/mlp/versions/1/trace/setting"),
    ],
    "logging": [("GET", "/v2/logging"), ("POST", "/v2/logging")],
    "generate": [("POST", "/v2/models/mlp/generate"), ("POST", "/v2/models/mlp/generate_stream")],
}


def test_triton_extensions_not_served_say_so_over_http(gateway):
    """A 501 naming the extension, counted as a refusal (a bare 404 "Not Found" read as a
    wrong URL or an unknown model)."""
    url, _, _, _ = gateway
    before = counts(url)
    sent = 0
    with httpx.Client(base_url=url, headers=KEY) as c:
        for extension, calls in UNSUPPORTED_HTTP.items():
            for method, path in calls:
                r = c.request(method, path, json={})
                assert r.status_code == 501, (path, r.status_code, r.text)
                assert r.headers["content-type"] == "application/json"
                assert r.json()["error"].startswith(f"the {extension} extension is not supported")
                sent += 1
    after = counts(url)
    refused = sum(n for k, n in after.items() if k[2] == "501") - sum(
        n for k, n in before.items() if k[2] == "501"
    )
    assert refused == sent
    client = thttp.InferenceServerClient(url.removeprefix("http://"))
    calls = {
        "system shared memory": client.get_system_shared_memory_status,
        "CUDA shared memory": client.unregister_cuda_shared_memory,
        "trace": client.get_trace_settings,
        "logging": client.get_log_settings,
    }
    for extension, call in calls.items():
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "501" and f"the {extension} extension" in str(err.value)


def test_triton_extensions_not_served_say_so_over_grpc(gateway):
    _, target, _, _ = gateway
    client = tgrpc.InferenceServerClient(target)
    calls = {
        "system shared memory": [
            client.get_system_shared_memory_status,
            lambda: client.register_system_shared_memory("r", "/k", 16),
            client.unregister_system_shared_memory,
        ],
        "CUDA shared memory": [
            client.get_cuda_shared_memory_status,
            client.unregister_cuda_shared_memory,
        ],
        "trace": [client.get_trace_settings],
        "logging": [client.get_log_settings],
    }
    for extension, fns in calls.items():
        for fn in fns:
            with pytest.raises(InferenceServerException) as err:
                fn()
            assert err.value.status() == "StatusCode.UNIMPLEMENTED"
            assert f"the {extension} extension is not supported" in err.value.message()


def test_an_empty_list_of_outputs_asks_for_every_output(gateway):
    """``"outputs": []`` over HTTP answers every output, as Triton does and as gRPC (where an
    empty list cannot be told from none) did; it answered none."""
    url, _, _, module = gateway
    x = np.random.default_rng(3).standard_normal((2, 784)).astype(np.float32)
    tensor = {"name": "input", "shape": [2, 784], "datatype": "FP32", "data": x.ravel().tolist()}
    r = httpx.post(
        url + "/v2/models/mlp/infer", json={"inputs": [tensor], "outputs": []}, headers=KEY
    )
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_allclose(got, reference(module, x), rtol=1e-4, atol=1e-5)


def test_clients_of_both_protocols_at_one_instant_get_their_own_answers(gateway):
    """tritonclient over HTTP (binary and JSON) and over gRPC (unary and a stream), all at once
    on one model: each answer is its own request's."""
    url, target, _, module = gateway
    host = url.removeprefix("http://")
    xs = [
        np.random.default_rng(40 + i).standard_normal((2, 784)).astype(np.float32) for i in range(8)
    ]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(xs))

    def over_http(i: int, binary: bool) -> np.ndarray:
        inp = thttp.InferInput("input", [2, 784], "FP32")
        inp.set_data_from_numpy(xs[i], binary_data=binary)
        asked = [thttp.InferRequestedOutput("output", binary_data=binary)]
        client = thttp.InferenceServerClient(host)
        start.wait()
        return client.infer("mlp", [inp], outputs=asked, headers=dict(KEY)).as_numpy("output")

    def over_grpc(i: int, stream: bool) -> np.ndarray:
        inp = tgrpc.InferInput("input", [2, 784], "FP32")
        inp.set_data_from_numpy(xs[i])
        client = tgrpc.InferenceServerClient(target)
        if not stream:
            start.wait()
            return client.infer("mlp", [inp], headers=dict(KEY)).as_numpy("output")
        answers: list = []
        done = threading.Event()
        client.start_stream(
            lambda result, error: (answers.append((result, error)), done.set()), headers=dict(KEY)
        )
        try:
            start.wait()
            client.async_stream_infer("mlp", [inp], request_id=f"s-{i}")
            assert done.wait(60)
        finally:
            client.stop_stream()
        result, error = answers[0]
        assert error is None, error
        return result.as_numpy("output")

    def send(i: int) -> None:
        kind = i % 4
        got[i] = over_http(i, kind == 0) if kind < 2 else over_grpc(i, kind == 3)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(got) == list(range(len(xs)))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(got[i], reference(module, x), rtol=1e-4, atol=1e-5)


def slo_requests(url: str, tenant: str, model: str) -> float:
    want = f'tidegate_slo_requests_total{{model="{model}",tenant="{tenant}"}} '
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(want):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_grpc_calls_get_access_log_lines_and_slo_counts_as_http_ones(gateway, caplog):
    """Each ModelInfer (and each request on a stream) has its access-log line, refusals
    included, and an answer counts in the tenant's SLO series (gRPC calls had neither)."""
    url, target, _, _ = gateway
    caplog.set_level(logging.INFO, logger="tidegate.access")
    slo_before = slo_requests(url, "a", "mlp")
    client = tgrpc.InferenceServerClient(target)
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 784), np.float32))
    client.infer("mlp", [inp], headers=KEY, request_id="line-ok")
    for model, headers in [("nope", KEY), ("mlp", {})]:
        with pytest.raises(InferenceServerException):
            client.infer(model, [inp], headers=headers, request_id=f"line-{model}")
    answers: list = []
    done = threading.Event()
    client.start_stream(lambda result, error: (answers.append(error), done.set()), headers=KEY)
    try:
        client.async_stream_infer("mlp", [inp], request_id="line-stream")
        assert done.wait(60)
    finally:
        client.stop_stream()
    garbage = b"\xff\xff\xff not protobuf"
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/ModelInfer", lambda b: b, lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(garbage, metadata=tuple(KEY.items()), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stream = channel.stream_stream(f"/{SERVICE}/ModelStreamInfer", lambda b: b, lambda b: b)
        assert len(list(stream(iter([garbage]), metadata=tuple(KEY.items()), timeout=30))) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "tidegate.access"]
    service = f"path=/{SERVICE}/"
    expected = [
        f"{service}ModelInfer status=200 tenant=a model=mlp route=vm",
        f"{service}ModelInfer status=404 tenant=a model=nope route=-",
        f"{service}ModelInfer status=401 tenant=- model=mlp route=-",
        f"{service}ModelStreamInfer status=200 tenant=a model=mlp route=vm",
        f"{service}ModelInfer status=400 tenant=- model=- route=-",  # not protobuf at all
        f"{service}ModelStreamInfer status=400 tenant=- model=- route=-",
    ]
    for part in expected:
        assert any(part in line for line in lines), (part, lines)
    assert any("request_id=line-ok" in line for line in lines)
    # refusals are logged under the call's id too (they logged request_id=-)
    assert any("status=401" in line and "request_id=line-mlp" in line for line in lines)
    assert any("status=404" in line and "request_id=line-nope" in line for line in lines)
    assert slo_requests(url, "a", "mlp") - slo_before == 2  # the unary call and the stream's


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/v2/models/mlp/infer/"), ("GET", "/v2/models/mlp/"), ("GET", "/v2/")],
)
def test_a_url_ending_in_a_slash_is_a_404_not_a_redirect_to_the_host_header(gateway, method, path):
    """Starlette answered 307 with a Location built from the Host header (any site the caller
    named; a cache in front may keep it), and an empty body; Triton answers 404."""
    url, _, _, _ = gateway
    r = httpx.request(
        method, url + path, headers={**KEY, "host": "evil.example"}, json={"inputs": []}
    )
    assert r.status_code == 404 and "location" not in r.headers, (r.status_code, r.headers)
    assert r.json()["error"] == "Not Found"


def routed(url: str, model: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("tidegate_routed_requests_total{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_grpc_call_the_client_cancels_is_still_accounted(gateway):
    """Cancelled once the gateway has routed it: the dispatch runs on and writes its row."""
    url, target, data, _ = gateway
    before = routed(url, "delay")
    request = pb.ModelInferRequest(model_name="delay", id="cancelled-1")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[ROWS, 16])
    tensor.contents.fp32_contents.extend([2.0] * 16 * ROWS)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            pb.ModelInferRequest.SerializeToString,
            pb.ModelInferResponse.FromString,
        )
        future = call.future(request, metadata=tuple(KEY.items()), timeout=60)
        deadline = time.monotonic() + 30  # (until the gateway has routed it)
        while routed(url, "delay") == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert routed(url, "delay") == before + 1
        assert future.cancel()
    rows = ledger_rows(data, "SELECT status, path FROM requests WHERE id = 'cancelled-1'")
    assert rows == [(200, "vm")]


def test_a_key_in_metadata_is_read_as_an_http_header_is(gateway):
    """Whitespace around a metadata value is not part of it (HTTP parsers drop it from a
    header): the key with spaces around it was an unknown key over gRPC alone."""
    url, target, _, _ = gateway
    inp = tgrpc.InferInput("input", [1, 784], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 784), np.float32))
    client = tgrpc.InferenceServerClient(target)
    got = client.infer("mlp", [inp], headers={"x-api-key": " key-a "}).as_numpy("output")
    assert got.shape == (1, 10)
    with pytest.raises(InferenceServerException) as err:
        client.infer("mlp", [inp], headers={"x-api-key": " key-b "})
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"


def test_a_refused_grpc_call_answers_its_request_id(gateway):
    """A 401 over gRPC carries x-request-id in its trailing metadata, as an HTTP refusal carries
    the header (it had none: the id was set once the call was authenticated)."""
    _, target, _, _ = gateway
    body = pb.ModelInferRequest(model_name="mlp").SerializeToString()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/ModelInfer", lambda b: b, lambda b: b)
        for metadata, want in [((), None), ((("x-request-id", "mine-1"),), "mine-1")]:
            with pytest.raises(grpc.RpcError) as err:
                call(body, metadata=metadata, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            trailing = dict(err.value.trailing_metadata() or ())
            assert trailing.get("x-request-id") and trailing["x-request-id"] == (
                want or trailing["x-request-id"]
            )
