"""Hostile and careless HTTP clients against a real gateway on loopback (fast lane included).

Every mistake gets a 4xx ``{"error": ...}`` naming it, never a 500 or a traceback in the log;
the server stays up and answers the next good request correctly; requests that share a binary
header (the decode cache's key) each get the answer to their own tensor bytes; a slow or lying
client does not hold up the others; a tenant reads no one else's report."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.artifact import load_artifact
from vmpool.codec import decode_response, encode_request

from .conftest import serve_app
from .ledger_rows import ledger_rows

MLP = "/v2/models/mlp/infer"
KEY_A, KEY_B, ADMIN = "key-a", "key-b", "admin-key"
AUTH = {"Authorization": f"Bearer {KEY_A}"}


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(url, data dir, mlp module): a gateway with two tenants and an admin key."""
    data = tmp_path_factory.mktemp("hostile-http")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        body_timeout_s=1.0,
        admin_api_key=ADMIN,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[{"name": "a", "api_keys": [KEY_A]}, {"name": "b", "api_keys": [KEY_B]}],
    )
    with serve_app(create_app(settings)) as url:
        yield url, data, load_artifact(small_repo, "mlp").load_module()


@pytest.fixture
def server_log(caplog):
    """The records the gateway logs during a test, uvicorn's own included (its loggers do not
    propagate to the root logger that caplog listens on)."""
    caplog.set_level(logging.WARNING)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    yield caplog
    uvicorn_log.removeHandler(caplog.handler)


@pytest.fixture
def no_tracebacks(server_log):
    """Fails the test if the gateway logs an error or a traceback during it."""
    yield
    bad = [r for r in server_log.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def reference(module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def rows(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 784)).astype(np.float32)


def json_body(x: np.ndarray, **override) -> dict:
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    tensor["data"] = x.ravel().tolist()
    return {"inputs": [{**tensor, **override}]}


def binary_post(url: str, x: np.ndarray, **headers) -> np.ndarray:
    body, length = encode_request({"input": x}, binary_output=True)
    r = httpx.post(
        url + MLP,
        content=body,
        headers={**AUTH, "Inference-Header-Content-Length": str(length), **headers},
    )
    assert r.status_code == 200, r.text
    return decode_response(r.content, int(r.headers["inference-header-content-length"])).outputs[
        "output"
    ]


def still_serving(url: str, module) -> None:
    """The next good request is answered, and correctly."""
    x = rows(99, 1)
    r = httpx.post(url + MLP, json=json_body(x), headers=AUTH)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, reference(module, x), rtol=1e-4, atol=1e-5)


def assert_user_error(r: httpx.Response, status: int, says: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert says in r.json()["error"], r.json()


X = rows(0, 1)
SHM = {"shared_memory_region": "out", "shared_memory_byte_size": 40}
JSON_CASES = {
    "malformed": (b"{not json", 400, "malformed JSON"),
    "empty body": (b"", 400, "malformed JSON"),
    "not an object": (b"[1, 2]", 400, "must be an object"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, 400, "depth"),
    "non-UTF-8": (b'{"inputs": "\xff\xfe"}', 400, "UTF-8"),
    "inputs not a list": ({"inputs": "x"}, 400, "'inputs' must be a list"),
    "shape and data disagree": (json_body(X, shape=[1, 783]), 400, "needs 783"),
    "negative dimension": (json_body(X, shape=[-1, 784]), 400, "negative"),
    "huge shape": (json_body(X, shape=[1, 2**40]), 400, "1099511627776"),
    "shape product overflows int64": (json_body(X, shape=[2**62, 2**62]), 400, "needs"),
    "float dimension": (json_body(X, shape=[1.5, 784]), 400, "non-negative integers"),
    "bool dimension": (json_body(X, shape=[True, 784]), 400, "non-negative integers"),
    "unknown datatype": (json_body(X, datatype="FLOAT99"), 400, "unknown datatype 'FLOAT99'"),
    "lower-case datatype": (json_body(X, datatype="fp32"), 400, "unknown datatype"),
    "wrong datatype": (
        json_body(X, datatype="INT64", data=[1] * 784),
        400,
        "expects FP32",
    ),
    "BYTES tensor": (json_body(X, datatype="BYTES", data=["a"] * 784), 400, "BYTES"),
    "strings for floats": (json_body(X, data=["a"] * 784), 400, "not a list of numbers"),
    "unknown input": (json_body(X, name="nope"), 400, "no input 'nope'"),
    "input twice": ({"inputs": json_body(X)["inputs"] * 2}, 400, "appears twice"),
    "unknown output": ({**json_body(X), "outputs": [{"name": "nope"}]}, 400, "no output"),
    "odd binary_data_output": (
        {**json_body(X), "parameters": {"binary_data_output": "yes"}},
        400,
        "binary_data_output",
    ),
    "parameters a list": ({**json_body(X), "parameters": [1]}, 400, "'parameters'"),
    "data and binary_data_size": (
        json_body(X, parameters={"binary_data_size": 10}),
        400,
        "both 'data' and binary_data_size",
    ),
    "id a number": ({**json_body(X), "id": 5}, 400, "'id' must be a string"),
    # tritonclient's set_shared_memory: answered in the body, the client's region stays unwritten
    "shared memory input": (
        json_body(X, parameters={"shared_memory_region": "r", "shared_memory_byte_size": 3136}),
        400,
        "shared memory is not supported",
    ),
    "shared memory output": (
        {**json_body(X), "outputs": [{"name": "output", "parameters": SHM}]},
        400,
        "shared memory is not supported",
    ),
    "batch of 0": (json_body(X, shape=[0, 784], data=[]), 400, "at least 1"),
    "batch over max_batch_size": (
        json_body(rows(0, 33)),
        400,
        "exceeds max_batch_size",
    ),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_json_mistakes_get_a_clear_400_and_the_server_goes_on(gateway, no_tracebacks, case):
    url, _, module = gateway
    body, status, says = JSON_CASES[case]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(url + MLP, content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert_user_error(r, status, says)
    still_serving(url, module)


RAW = rows(1).tobytes()


def _header(**tensor) -> bytes:
    doc = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [2, 784],
                "parameters": {"binary_data_size": len(RAW)},
                **tensor,
            }
        ]
    }
    return json.dumps(doc).encode()


BINARY_CASES = {
    # name: (header bytes, tensor bytes, Inference-Header-Content-Length or None, says)
    "binary_data_size too big": (
        _header(parameters={"binary_data_size": len(RAW) + 4}),
        RAW,
        None,
        "binary_data_size is 6276",
    ),
    "binary_data_size too small": (
        _header(parameters={"binary_data_size": len(RAW) - 4}),
        RAW,
        None,
        "binary_data_size is 6268",
    ),
    "binary_data_size negative": (
        _header(parameters={"binary_data_size": -4}),
        RAW,
        None,
        "non-negative integer",
    ),
    "binary_data_size a string": (
        _header(parameters={"binary_data_size": "6272"}),
        RAW,
        None,
        "non-negative integer",
    ),
    "binary_data_size 2**63": (
        _header(parameters={"binary_data_size": 2**63}),
        RAW,
        None,
        "binary_data_size is",
    ),
    "body shorter than claimed": (_header(), RAW[:-4], None, "past the end of the body"),
    "bytes nobody claims": (_header(), RAW + b"xxxx", None, "no tensor claims"),
    "header length past the body": (_header(), RAW, 10**6, "but the body has"),
    "header length negative": (_header(), RAW, -5, "must not be negative"),
    "header length not a number": (_header(), RAW, "abc", "must be an integer"),
    "header length cuts the JSON": (_header(), RAW, 50, "malformed JSON"),
    "non-UTF-8 header": (b'{"inputs": [{"name": "\xff\xfe"}]}', RAW, None, "UTF-8"),
    "shape against bytes": (_header(shape=[3, 784]), RAW, None, "needs 9408"),
    "huge shape": (_header(shape=[1, 2**40]), RAW, None, "4398046511104"),
    "shape product overflows": (_header(shape=[2**62, 2**62, 16]), RAW, None, "needs"),
    "negative shape": (_header(shape=[-2, -784]), RAW, None, "negative dimension"),
    "unknown datatype": (_header(datatype="XX"), RAW, None, "unknown datatype 'XX'"),
    "wrong datatype": (_header(datatype="FP64", shape=[1, 784]), RAW, None, "expects FP32"),
    "BYTES": (_header(datatype="BYTES"), RAW, None, "BYTES"),
}


@pytest.mark.parametrize("case", sorted(BINARY_CASES))
def test_binary_mistakes_get_a_clear_400_and_the_server_goes_on(gateway, no_tracebacks, case):
    url, _, module = gateway
    header, tensor, length, says = BINARY_CASES[case]
    declared = len(header) if length is None else length
    r = httpx.post(
        url + MLP,
        content=header + tensor,
        headers={**AUTH, "Inference-Header-Content-Length": str(declared)},
    )
    assert_user_error(r, 400, says)
    still_serving(url, module)


@pytest.mark.parametrize(
    "path, body",
    [
        (MLP, b'{"inputs": [{"name": "' + b"n" * 2**20 + b'"}]}'),
        (MLP, json.dumps(json_body(X, datatype="Q" * 2**20)).encode()),
        ("/v2/models/" + "m" * 60_000 + "/infer", b"{}"),
    ],
    ids=["input name", "datatype", "model name"],
)
def test_an_error_does_not_echo_a_huge_value_back(gateway, no_tracebacks, path, body):
    url, _, module = gateway
    r = httpx.post(url + path, content=body, headers=AUTH)
    assert r.status_code in (400, 404) and len(r.content) < 4096, len(r.content)
    assert "characters cut" in r.json()["error"]
    still_serving(url, module)


def test_the_same_binary_header_with_other_bytes_gets_its_own_answer(gateway, no_tracebacks):
    """The decode cache keys on the header's bytes: each body's tensors are its own, and a bad
    body behind a cached header is still refused."""
    url, _, module = gateway
    headers = set()
    for seed in range(4):
        x = rows(10 + seed)
        body, length = encode_request({"input": x}, binary_output=True)
        headers.add(body[:length])
        np.testing.assert_allclose(binary_post(url, x), reference(module, x), rtol=1e-4, atol=1e-5)
    assert len(headers) == 1  # the same header bytes every time
    (header,) = headers
    for tail, says in [(RAW[:100], "past the end"), (RAW + RAW, "no tensor claims")]:
        r = httpx.post(
            url + MLP,
            content=header + tail,
            headers={**AUTH, "Inference-Header-Content-Length": str(len(header))},
        )
        assert_user_error(r, 400, says)


def test_a_cached_header_is_still_checked_against_each_model(gateway, no_tracebacks):
    """The header that mlp accepted (and the cache holds) is refused by resnet18."""
    url, _, module = gateway
    x = rows(30)
    binary_post(url, x)
    body, length = encode_request({"input": x}, binary_output=True)
    r = httpx.post(
        url + "/v2/models/resnet18/infer",
        content=body,
        headers={**AUTH, "Inference-Header-Content-Length": str(length)},
    )
    assert_user_error(r, 400, "input")
    np.testing.assert_allclose(binary_post(url, x), reference(module, x), rtol=1e-4, atol=1e-5)


def test_pipelined_binary_requests_with_one_header_get_their_own_answers(gateway):
    url, _, module = gateway
    xs = [rows(300 + i) for i in range(4)]
    wire = b""
    for x in xs:
        body, length = encode_request({"input": x}, binary_output=False)
        wire += (
            b"POST "
            + MLP.encode()
            + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + KEY_A.encode()
            + b"\r\nInference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
            % (length, len(body))
            + body
        )
    answer = _raw_http(url, wire)
    heads = answer.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"200"] * len(xs), answer[:300]
    for head, x in zip(heads, xs):
        doc = json.loads(head[head.index(b"\r\n\r\n") + 4 :])
        got = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(2, 10)
        np.testing.assert_allclose(got, reference(module, x), rtol=1e-4, atol=1e-5)


def test_simultaneous_requests_with_one_header_each_get_their_own_answer(gateway, no_tracebacks):
    url, data, module = gateway
    xs = [rows(100 + i) for i in range(16)]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(xs))

    def send(i: int) -> None:
        start.wait()
        got[i] = binary_post(url, xs[i], **{"x-request-id": f"same-header-{i}"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(len(xs)))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(got[i], reference(module, x), rtol=1e-4, atol=1e-5)
    logged = ledger_rows(
        data,
        "SELECT id FROM requests WHERE id LIKE 'same-header-%'",
        at_least=len(xs),
    )
    assert len(logged) == len(xs)  # nothing accepted is lost


def test_identical_requests_at_the_same_instant_all_answer_the_same(gateway, no_tracebacks):
    url, _, module = gateway
    x = rows(7)
    answers: list[np.ndarray] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(binary_post(url, x))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8
    for a in answers:
        np.testing.assert_allclose(a, reference(module, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "path, says",
    [
        ("/v2/models/..%2F..%2Fetc/infer", ""),
        ("/v2/models/ml%C3%A9/infer", "unknown model"),
        ("/v2/models/%00/infer", "unknown model"),
        ("/v2/models/" + "a" * 5000 + "/infer", "unknown model"),
        ("/v2/models/mlp/versions/2/infer", "no version '2'"),
        ("/v2/models/mlp/versions/-1/infer", "no version"),
    ],
)
def test_odd_model_names_and_versions_are_404(gateway, no_tracebacks, path, says):
    url, _, module = gateway
    r = httpx.post(url + path, json=json_body(X), headers=AUTH)
    assert_user_error(r, 404, says)
    still_serving(url, module)


def _raw_http(url: str, data: bytes, *, shut: bool = False, timeout_s: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if not shut and out.count(b"HTTP/1.1 ") >= data.count(b"POST "):
                if out.rstrip().endswith(b"}"):
                    break
        return out


def _post(body: bytes, length: int | None = None, extra: bytes = b"") -> bytes:
    declared = len(body) if length is None else length
    return (
        b"POST "
        + MLP.encode()
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY_A.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % declared
        + extra
        + b"\r\n"
        + body
    )


GOOD = json.dumps(json_body(X)).encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        _post(GOOD, len(GOOD) - 10),  # Content-Length too short: the rest is garbage
        _post(GOOD, -1),
        _post(GOOD, extra=b"Content-Length: 5\r\n"),  # two Content-Lengths
        b"POST "
        + MLP.encode()
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["content-length short", "content-length negative", "two lengths", "bad chunk"],
)
def test_lying_framing_gets_400_and_the_server_goes_on(gateway, request_bytes):
    url, _, module = gateway
    answer = _raw_http(url, request_bytes, shut=True)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    still_serving(url, module)


def test_a_content_length_over_the_limit_is_413_before_the_body(gateway):
    url, _, module = gateway
    answer = _raw_http(url, _post(GOOD, 10**12), shut=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"over the limit" in answer
    still_serving(url, module)


def test_pipelined_requests_are_answered_in_order(gateway):
    url, _, module = gateway
    xs = [rows(200 + i, 1) for i in range(3)]
    bodies = [json.dumps(json_body(x)).encode() for x in xs]
    answer = _raw_http(url, _post(b"{bad}") + b"".join(_post(b) for b in bodies))
    heads = answer.split(b"HTTP/1.1 ")[1:]
    assert [h[:3] for h in heads] == [b"400", b"200", b"200", b"200"], answer[:300]
    for head, x in zip(heads[1:], xs):
        doc = json.loads(head[head.index(b"\r\n\r\n") + 4 :])
        got = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(1, 10)
        np.testing.assert_allclose(got, reference(module, x), rtol=1e-4, atol=1e-5)


def test_slow_partial_bodies_do_not_hold_up_others(gateway):
    """Twenty clients that send half a body and stall: a good request is answered meanwhile,
    and each stalled client gets 408 once the body timeout (1 s here) runs out."""
    url, _, module = gateway
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(20):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(_post(GOOD)[: -len(GOOD) // 2])
        stalled.append(s)
    try:
        still_serving(url, module)
        for s in stalled:
            assert s.recv(4096).startswith(b"HTTP/1.1 408")
    finally:
        for s in stalled:
            s.close()
    still_serving(url, module)


def test_a_tenant_reads_only_its_own_report_and_keys_are_checked(gateway, no_tracebacks):
    url, _, _ = gateway
    report = url + "/admin/reports/tenants/"

    def get(path: str, key: str | None = None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(report + path, headers=headers, params=params)

    assert get("a", KEY_A).status_code == 200 and get("a", KEY_A).json()["tenant"] == "a"
    assert_user_error(get("b", KEY_A), 403, "")
    assert_user_error(get("nobody", KEY_A), 403, "")  # no hint whether a tenant exists
    assert_user_error(get("a"), 401, "")
    assert_user_error(get("a", "wrong"), 401, "")
    assert get("b", ADMIN).status_code == 200
    assert_user_error(get("nobody", ADMIN), 404, "")
    assert_user_error(get("a", KEY_A, since="nan"), 400, "not a time")
    assert_user_error(get("a", KEY_A, since="yesterday"), 400, "ISO 8601")
    assert_user_error(get("a", KEY_A, since="2026-12-01", until="2026-11-01"), 400, "before")
    assert_user_error(get("a", KEY_A, by="week"), 400, "cannot group by")
    for key, status in [(None, 401), ("wrong", 403), (KEY_A, 403)]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.put(url + "/admin/policy", headers=headers, json={"routing_policy": "vm-only"})
        assert_user_error(r, status, "")
        assert_user_error(httpx.get(url + "/admin/policy", headers=headers), status, "")
    r = httpx.get(url + "/admin/policy", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200 and "routing_policy" in r.json()


@pytest.mark.parametrize(
    "data",
    [["0.5"] * 784, [True] * 784, [0.5] * 783 + [False], [None] * 783 + ["x"]],
    ids=["numeric strings", "bool", "a bool last", "text among nulls"],
)
def test_non_numbers_in_a_float_tensor_are_refused(gateway, data):
    url, _, _ = gateway
    r = httpx.post(url + MLP, json=json_body(X, data=data), headers=AUTH)
    assert_user_error(r, 400, "data")
    still_serving(url, gateway[2])


def test_null_in_a_float_tensor_is_nan_as_kserves_sdk_writes_it(gateway):
    """JSON has no NaN: KServe's SDK (orjson) sends NaN and infinities as null, and KServe's
    server reads null as NaN. It was a 400 here ("FP32 tensor given null values")."""
    url, _, module = gateway
    x = rows(5, 2)
    data = x.ravel().tolist()
    data[0] = None  # the first row's first pixel
    r = httpx.post(url + MLP, json=json_body(x, data=data), headers=AUTH)
    assert r.status_code == 200, r.text
    got = r.json()["outputs"][0]["data"]
    assert all(v is None for v in got[:10])  # NaN in, NaN out (answered as null)
    np.testing.assert_allclose(
        np.asarray(got[10:], np.float32), reference(module, x[1:]).ravel(), rtol=1e-4, atol=1e-5
    )


@pytest.fixture(scope="module")
def open_gateway_with_admin_key(model_server, small_repo, tmp_path_factory):
    """A gateway without tenants whose operator set an admin key."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("hostile-open"),
        repo=small_repo,
        admin_api_key=ADMIN,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url:
        yield url


def test_the_admin_key_guards_the_repository_api_as_it_guards_admin(open_gateway_with_admin_key):
    url = open_gateway_with_admin_key
    assert_user_error(httpx.get(url + "/admin/policy"), 401, "admin key")
    r = httpx.post(url + "/v2/repository/models/mlp/unload")
    try:
        assert_user_error(r, 401, "admin key")
        wrong = httpx.post(url + "/v2/repository/models/mlp/unload", headers={"x-api-key": "x"})
        assert_user_error(wrong, 403, "admin key")
        index = httpx.post(url + "/v2/repository/index", headers={"x-api-key": ADMIN})
        assert index.status_code == 200
        assert {"name": "mlp", "state": "READY"}.items() <= index.json()[0].items()
    finally:
        httpx.post(url + "/v2/repository/models/mlp/load", headers={"x-api-key": ADMIN})


def _codes(url: str) -> dict[str, float]:
    """tidegate_requests_total by code, summed over the other labels."""
    out: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("tidegate_requests_total{"):
            code = line.split('code="', 1)[1].split('"', 1)[0]
            out[code] = out.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.parametrize(
    "rows_sent, path",
    [(1, MLP), (40, MLP), (1, "/admin/policy")],
    ids=["fast lane", "app path", "another route"],
)
def test_a_client_gone_before_its_body_is_in_is_a_499_not_a_500(gateway, rows_sent, path):
    """Counted (and logged) as 499, the client's doing: it was the access log's default 500,
    a server error on the dashboards for every client that hung up mid-upload."""
    url, _, module = gateway
    before = _codes(url)
    body = json.dumps(json_body(rows(5, rows_sent))).encode()
    assert (len(body) > 64 << 10) == (rows_sent > 1)  # (the lane takes bodies up to 64 KiB)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(_post(body).replace(MLP.encode(), path.encode(), 1)[: -len(body) // 2])
    after = _codes(url)
    deadline = time.monotonic() + 30  # (until the gateway has seen the connection close)
    while after.get("499", 0) == before.get("499", 0) and time.monotonic() < deadline:
        time.sleep(0.02)
        after = _codes(url)
    assert after.get("499", 0) - before.get("499", 0) == 1, (before, after)
    assert after.get("500", 0) == before.get("500", 0)
    still_serving(url, module)
