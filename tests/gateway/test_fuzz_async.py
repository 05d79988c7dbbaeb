"""Property-based fuzz of the async API (``Prefer: respond-async`` submit, ``GET``/``DELETE
/v2/requests/{id}`` poll and cancel) on a real gateway and model server on loopback.

Submits get valid and hostile bodies (JSON and binary), odd ``Prefer``, ``Idempotency-Key``,
callback URLs, route headers and keys. A refusal is a 4xx with ``{"error": ...}`` and puts no
job in the queue; an accepted request is never lost: it is found and answered as the synchronous
call answers the same request. Polls and cancels of odd ids are a 404 in the same shape. Never a
5xx, never a failure in the log. (``FUZZ_EXAMPLES``: see fuzz_support.py.)
"""

from __future__ import annotations

import sqlite3
import time
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.codec import encode_request

from .conftest import serve_app
from .fuzz_support import JSON_VALUES, dumps, fuzz_settings, logged_failures

KEY_A, KEY_B, SECRET_A = "key-a", "key-b", "whsec-a"
MLP = "/v2/models/mlp/infer"
POLL_S = 30  # an accepted request not answered by then is lost


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(base URL, the queue's SQLite file, log failures, {(key, Idempotency-Key): job id})."""
    data = tmp_path_factory.mktemp("fuzz-async")
    settings = Settings.load(
        None,
        data_dir=data,
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[
            {"name": "a", "api_keys": [KEY_A], "callback_secret": SECRET_A},
            {"name": "b", "api_keys": [KEY_B]},
        ],
    )
    with logged_failures() as failures, serve_app(create_app(settings)) as url:
        yield url, data / "async-queue.sqlite", failures, {}


def jobs_in(queue_file) -> int:
    with sqlite3.connect(f"file:{queue_file}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0]


@st.composite
def bodies(draw) -> tuple[bytes, dict[str, str], bool]:
    """(body, its content headers, well-formed): a JSON or binary infer body for the MLP, or
    one with a hostile part."""
    rows, seed = draw(st.integers(1, 3)), draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal((rows, 784)).astype(np.float32)
    request_id = draw(st.one_of(st.none(), st.text(max_size=12)))
    kind = draw(st.sampled_from(["json", "binary", "json-hostile", "binary-hostile", "any"]))
    if kind.startswith("json"):
        tensor = {
            "name": "input",
            "shape": [rows, 784],
            "datatype": "FP32",
            "data": x.ravel().tolist(),
        }
        body = {"inputs": [tensor], **({"id": request_id} if request_id is not None else {})}
        if kind == "json-hostile":
            where = draw(st.sampled_from(["tensor", "body"]))
            target = tensor if where == "tensor" else body
            target[draw(st.sampled_from(sorted(target) + ["outputs", "parameters"]))] = draw(
                JSON_VALUES
            )
        return dumps(body), {"content-type": "application/json"}, kind == "json"
    if kind.startswith("binary"):
        payload, length = encode_request({"input": x}, request_id=request_id)
        if kind == "binary-hostile":
            length = draw(st.one_of(st.integers(-5, len(payload) + 5), st.sampled_from([2**64])))
        headers = {"inference-header-content-length": str(length)}
        return payload, {**headers, "content-type": "application/octet-stream"}, kind == "binary"
    return dumps(draw(JSON_VALUES)), {"content-type": "application/json"}, False


PREFER = st.sampled_from(
    ["respond-async"] * 4 + ["RESPOND-ASYNC", "respond-async; wait=5", "wait=5, respond-async"]
)
KEYS = st.sampled_from([{"x-api-key": KEY_A}] * 3 + [{"x-api-key": KEY_B}, {}, {"x-api-key": "x"}])
IDEMPOTENCY = st.one_of(
    st.none(),
    st.sampled_from(["k1", "k2", "", "k" * 300]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16),
)
CALLBACKS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "ftp://x/y",
            "http://[::1",
            "http://169.254.169.254/latest",
            "not a url",
            "http://127.0.0.1:1/cb",
            "http://h:99999/",
        ]
    ),
)


def final_answer(c: httpx.Client, location: str, headers: dict) -> httpx.Response:
    deadline = time.monotonic() + POLL_S
    while (resp := c.get(location, headers=headers)).status_code == 202:
        assert time.monotonic() < deadline, f"{location} still {resp.json()} after {POLL_S} s"
        time.sleep(0.02)
    return resp


def outputs(resp: httpx.Response) -> tuple[int, object]:
    """(status, what a client reads: the outputs' values, or the error)."""
    if resp.headers.get("content-type", "").startswith("application/json"):
        doc = resp.json()
        if "outputs" in doc:
            return resp.status_code, [(o["name"], o["shape"], o["data"]) for o in doc["outputs"]]
        return resp.status_code, doc
    from vmpool.codec import decode_response

    answer = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
    return resp.status_code, {k: v.tolist() for k, v in answer.outputs.items()}


def assert_refusal(resp: httpx.Response) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    error = resp.json()["error"]
    assert isinstance(error, str) and error.strip() and "internal error" not in error


@given(
    case=bodies(),
    prefer=PREFER,
    key=KEYS,
    idempotency=IDEMPOTENCY,
    callback=CALLBACKS,
    route=st.sampled_from([None] * 6 + ["vm", "burst"]),
)
@fuzz_settings(60)
@example(  # (urlsplit's ValueError for this URL was a 500; so was a port past 65535)
    case=(b"{}", {"content-type": "application/json"}, False),
    prefer="respond-async",
    key={"x-api-key": KEY_A},
    idempotency=None,
    callback="http://[::1",
    route=None,
)
def test_a_submit_is_accepted_and_answered_or_refused_with_nothing_queued(
    gateway, case, prefer, key, idempotency, callback, route
):
    url, queue_file, failures, jobs_by_key = gateway
    body, content_headers, well_formed = case
    headers = {**content_headers, **key, "prefer": prefer}
    headers |= {"idempotency-key": idempotency} if idempotency is not None else {}
    headers |= {"x-tidegate-callback": callback} if callback is not None else {}
    headers |= {"x-tidegate-route": route} if route is not None else {}
    with httpx.Client(base_url=url, timeout=POLL_S) as c:
        before = jobs_in(queue_file)
        resp = c.post(MLP, content=body, headers=headers)
        event(f"submit {resp.status_code}")
        retry_of = (str(key), (idempotency or "").strip())
        first = jobs_by_key.get(retry_of) if retry_of[1] else None
        # a key sent again is a retry (the model is the same), unless with another body: that
        # is refused (a 422, or an earlier refusal), though its first request was answered
        if first is not None and body != first[1]:
            assert_refusal(resp)
            assert jobs_in(queue_file) == before, "a refused request left a job"
            failures.assert_none()
            return
        assert resp.status_code != 422, resp.text
        if resp.status_code != 202:
            assert_refusal(resp)
            assert jobs_in(queue_file) == before, "a refused request left a job"
            plain = key == {"x-api-key": KEY_A} and callback is None and route is None
            assert not (well_formed and plain), f"a well-formed request refused: {resp.text}"
            failures.assert_none()
            return
        doc = resp.json()
        assert resp.headers["location"] == doc["location"] == f"/v2/requests/{doc['id']}"
        if first is not None:  # a retry: the first request's job
            assert doc["id"] == first[0]
            failures.assert_none()
            return
        if retry_of[1]:
            jobs_by_key[retry_of] = (doc["id"], body)  # (the body: for a reader of a failure)
        done = final_answer(c, doc["location"], key)
        assert done.headers["x-tidegate-request-state"] in ("done", "failed"), done.text
        sync_headers = {
            k: v
            for k, v in headers.items()
            if k not in ("prefer", "idempotency-key", "x-tidegate-callback")
        }
        sync = c.post(MLP, content=body, headers=sync_headers)
        assert outputs(done) == outputs(sync)
    failures.assert_none()


ODD_IDS = st.one_of(
    st.sampled_from(["", "0" * 32, "../../etc/passwd", "%00", "a" * 5000, "*", "' OR 1=1 --"]),
    st.text(min_size=1),
)


@given(job_id=ODD_IDS, delete=st.booleans(), key=KEYS)
@fuzz_settings(60)
def test_polls_and_cancels_of_odd_ids_are_clear_refusals(gateway, job_id, delete, key):
    url, queue_file, failures, _ = gateway
    path = "/v2/requests/" + quote(job_id, safe="").replace(".", "%2E")
    with httpx.Client(base_url=url, timeout=30) as c:
        before = jobs_in(queue_file)
        resp = c.request("DELETE" if delete else "GET", path, headers=key)
    event(f"{'DELETE' if delete else 'GET'} {resp.status_code}")
    assert_refusal(resp)  # ("a/" is another path, HTTP servers decode %2F: a 404, no 307)
    assert jobs_in(queue_file) == before
    failures.assert_none()
