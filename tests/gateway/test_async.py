"""Async inference (``Prefer: respond-async``) over the embedded durable queue, end to end."""

from __future__ import annotations

import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import numpy as np
import pytest
import torch

from gateway.app import create_app
from gateway.asyncq.callback import SIGNATURE_HEADER, verify_signature
from gateway.settings import Settings
from tests.support.loopback import LoopbackHTTPServer
from tests.support.s3_server import s3_endpoint  # noqa: F401 - moto serves SQS too
from vmpool.artifact import load_artifact
from vmpool.codec import decode_response, encode_request
from tests.support.loopback import refusing_port

from .conftest import serve_app

KEY_A, KEY_B, SECRET_A = "key-a", "key-b", "whsec-a"
KEY_BATCH, KEY_TIGHT = "key-batch", "key-tight"  # async SLO class: loose and too tight deadlines
KEY_RESNET = "key-resnet"  # a tenant that may use resnet18 only
ASYNC = {"Prefer": "respond-async"}


class CallbackReceiver(LoopbackHTTPServer):
    """Records each POST (headers, body) and sets an event."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()
                outer.event.set()

            def log_message(self, *args):
                pass

        self._listen(Handler)


def _settings(data, repo, urls, **extra):
    # the callback receivers listen on loopback: allowed explicitly (off by default)
    extra["async_queue"] = {"callback_allow_private": True, **extra.get("async_queue", {})}
    return Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": urls},
        burst={"enabled": False},
        tenants=[
            {"name": "a", "api_keys": [KEY_A], "callback_secret": SECRET_A},
            {"name": "b", "api_keys": [KEY_B]},
            {"name": "batch", "api_keys": [KEY_BATCH], "slo_class": "async", "deadline_s": 600},
            {"name": "tight", "api_keys": [KEY_TIGHT], "slo_class": "async", "deadline_s": 0.001},
            {"name": "resnet", "api_keys": [KEY_RESNET], "models": ["resnet18"]},
        ],
        **extra,
    )


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    data = tmp_path_factory.mktemp("async-gw")
    with serve_app(create_app(_settings(data, small_repo, [model_server]))) as url:
        yield url


def reference(repo, name, x):
    with torch.inference_mode():
        return load_artifact(repo, name).load_module()(torch.from_numpy(x)).numpy()


def _binary(x):
    body, hl = encode_request({"input": x})
    return body, {
        "Inference-Header-Content-Length": str(hl),
        "Content-Type": "application/octet-stream",
    }


def wait_done(url, location, headers, timeout_s=60.0, pending=(202,)):
    deadline = time.monotonic() + timeout_s
    while True:
        resp = httpx.get(url + location, headers=headers)
        if resp.status_code not in pending or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_accepted_then_answered_like_the_synchronous_call(gateway, small_repo):
    x = np.random.default_rng(3).standard_normal((2, 784)).astype(np.float32)
    body, headers = _binary(x)
    auth = {"x-api-key": KEY_A}
    resp = httpx.post(
        gateway + "/v2/models/mlp/infer", content=body, headers={**headers, **auth, **ASYNC}
    )
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    assert location == f"/v2/requests/{resp.json()['id']}"
    assert resp.headers["preference-applied"] == "respond-async"
    done = wait_done(gateway, location, auth)
    assert done.status_code == 200 and done.headers["x-tidegate-request-state"] == "done"
    answer = decode_response(done.content, int(done.headers["inference-header-content-length"]))
    assert np.abs(answer.outputs["output"] - reference(small_repo, "mlp", x)).max() <= 1e-5
    assert done.headers["x-tidegate-path"] == "vm"
    # only the tenant that sent it sees it
    assert httpx.get(gateway + location, headers={"x-api-key": KEY_B}).status_code == 404
    assert httpx.get(gateway + location).status_code == 401
    # DELETE of a finished request drops its answer
    assert httpx.delete(gateway + location, headers=auth).json()["state"] == "done"
    assert httpx.get(gateway + location, headers=auth).status_code == 404


def test_bad_requests_are_refused_before_queueing(gateway):
    good = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
    auth = {"x-api-key": KEY_A, **ASYNC}
    post = lambda path, js, h=auth: httpx.post(gateway + path, json=js, headers=h)  # noqa: E731
    assert post("/v2/models/mlp/infer", {"inputs": [good]}, ASYNC).status_code == 401
    assert post("/v2/models/nope/infer", {"inputs": [good]}).status_code == 404
    bad = post("/v2/models/mlp/infer", {"inputs": [{**good, "shape": [1, 5], "data": [0.0] * 5}]})
    assert bad.status_code == 400 and "shape" in bad.json()["error"]
    # a model the tenant may not use: 403 before the body is read (a 400 would name the shape)
    other = {"x-api-key": KEY_RESNET, **ASYNC}
    denied = post("/v2/models/mlp/infer", {"inputs": [{**good, "shape": [1, 5]}]}, other)
    assert denied.status_code == 403 and "may not use model" in denied.json()["error"]
    assert "shape" not in denied.json()["error"]
    forced = httpx.post(
        gateway + "/v2/models/mlp/infer",
        json={"inputs": [good]},
        headers={**auth, "X-Tidegate-Route": "burst"},
    )
    assert forced.status_code == 400
    no_secret = httpx.post(
        gateway + "/v2/models/mlp/infer",
        json={"inputs": [good]},
        headers={"x-api-key": KEY_B, **ASYNC, "X-Tidegate-Callback": "http://127.0.0.1:9/cb"},
    )
    assert no_secret.status_code == 400 and "secret" in no_secret.json()["error"]


def test_callback_is_signed_with_the_tenants_secret(gateway, small_repo):
    receiver = CallbackReceiver().start()
    try:
        x = np.random.default_rng(4).standard_normal((1, 784)).astype(np.float32)
        body, headers = _binary(x)
        resp = httpx.post(
            gateway + "/v2/models/mlp/infer",
            content=body,
            headers={
                **headers,
                "x-api-key": KEY_A,
                **ASYNC,
                "X-Tidegate-Callback": receiver.endpoint + "/done",
            },
        )
        assert resp.status_code == 202
        assert receiver.event.wait(60), "no callback"
        got_headers, got_body = receiver.received[0]
        assert got_headers["x-request-id"] == resp.json()["id"]
        assert got_headers["x-tidegate-status"] == "200"
        assert got_headers["x-tidegate-path"] == "vm" and "x-tidegate-cost-usd" in got_headers
        assert verify_signature(
            SECRET_A, got_headers[SIGNATURE_HEADER.lower()], got_body, time.time()
        )
        assert not verify_signature(
            "another secret", got_headers[SIGNATURE_HEADER.lower()], got_body, time.time()
        )
        assert not verify_signature(
            SECRET_A, got_headers[SIGNATURE_HEADER.lower()], got_body + b"x", time.time()
        )
        answer = decode_response(got_body, int(got_headers["inference-header-content-length"]))
        assert np.abs(answer.outputs["output"] - reference(small_repo, "mlp", x)).max() <= 1e-5
    finally:
        receiver.stop()


def test_pending_request_can_be_cancelled(small_repo, tmp_path):
    # nothing listens at the replica's URL: the job waits (pending, or back off after a 503)
    settings = _settings(tmp_path, small_repo, ["http://127.0.0.1:9"])
    with serve_app(create_app(settings)) as url:
        auth = {"x-api-key": KEY_A}
        good = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
        resp = httpx.post(
            url + "/v2/models/mlp/infer", json={"inputs": [good]}, headers={**auth, **ASYNC}
        )
        assert resp.status_code == 202
        location = resp.headers["location"]
        pending = httpx.get(url + location, headers=auth)
        assert pending.status_code == 202 and pending.json()["state"] in ("pending", "running")
        metrics = httpx.get(url + "/metrics").text
        assert "tidegate_async_queue_depth" in metrics
        assert httpx.delete(url + location, headers=auth).json()["state"] == "cancelled"
        assert httpx.get(url + location, headers=auth).status_code == 410
        assert httpx.delete(url + "/v2/requests/nope", headers=auth).status_code == 404


def test_redis_backend_serves_the_same_way(model_server, small_repo, tmp_path):
    from tests.support.redis import redis_binary, start_redis

    if redis_binary() is None:
        pytest.skip("redis-server is not installed")
    redis = start_redis()
    try:
        settings = _settings(
            tmp_path,
            small_repo,
            [model_server],
            redis_url=redis.url,
            async_queue={"backend": "redis"},
        )
        with serve_app(create_app(settings)) as url:
            x = np.random.default_rng(6).standard_normal((1, 784)).astype(np.float32)
            body, headers = _binary(x)
            auth = {"x-api-key": KEY_A}
            resp = httpx.post(
                url + "/v2/models/mlp/infer", content=body, headers={**headers, **auth, **ASYNC}
            )
            assert resp.status_code == 202, resp.text
            done = wait_done(url, resp.headers["location"], auth)
            assert done.status_code == 200
            answer = decode_response(
                done.content, int(done.headers["inference-header-content-length"])
            )
            assert np.abs(answer.outputs["output"] - reference(small_repo, "mlp", x)).max() <= 1e-5
    finally:
        redis.stop()


def test_a_retried_post_with_the_same_idempotency_key_is_one_job(gateway):
    good = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}

    def post(key, headers, body_id="item-1"):
        return httpx.post(
            gateway + "/v2/models/mlp/infer",
            json={"inputs": [good], **({"id": body_id} if body_id else {})},
            headers={**headers, **ASYNC, "Idempotency-Key": key},
        )

    first = post("batch-7/item-1", {"x-api-key": KEY_A})
    again = post("batch-7/item-1", {"x-api-key": KEY_A})
    assert first.status_code == again.status_code == 202
    assert first.headers["location"] == again.headers["location"]
    # the retry's 202 is the first one's: same job, status URL and request id
    assert first.json()["request_id"] == again.json()["request_id"] == "item-1"
    assert first.json()["id"] == again.json()["id"]
    other_tenant = post("batch-7/item-1", {"x-api-key": KEY_B})
    assert other_tenant.headers["location"] != first.headers["location"]
    assert wait_done(gateway, first.headers["location"], {"x-api-key": KEY_A}).status_code == 200
    late = post("batch-7/item-1", {"x-api-key": KEY_A})  # a retry after it was served
    assert late.status_code == 202 and late.json()["request_id"] == "item-1"
    assert late.headers["location"] == first.headers["location"]
    # no id in the body: the request id is the job's (as the answer's x-request-id)
    plain = [post("batch-7/item-2", {"x-api-key": KEY_A}, body_id=None) for _ in range(2)]
    assert [p.json()["request_id"] for p in plain] == [plain[0].json()["id"]] * 2
    assert plain[0].headers["x-request-id"] == plain[0].json()["request_id"]


def test_an_idempotency_key_sent_with_another_request_is_a_422(small_repo, tmp_path):
    """While the first request waits (its only replica is down; a failed try waits 600 s for
    the next, so its request stays stored), the key again with another
    body, or for another model, is refused; with the same body it is the retry it was."""
    with refusing_port() as port:  # (nothing listens: every job waits for a replica)
        dead = f"http://127.0.0.1:{port}"
        settings = _settings(tmp_path, small_repo, [dead], async_queue={"retry_delay_s": 600})
        x = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
        with serve_app(create_app(settings)) as url:

            def post(data, model="mlp"):
                body = {"inputs": [{**x, "data": data}]}
                hdrs = {"x-api-key": KEY_A, **ASYNC, "Idempotency-Key": "k-1"}
                return httpx.post(f"{url}/v2/models/{model}/infer", json=body, headers=hdrs)

            first = post([0.0] * 784)
            assert first.status_code == 202, first.text
            other_body, other_model = post([1.0] * 784), post([0.0] * 784, model="resnet18")
            assert other_body.status_code == other_model.status_code == 422
            assert "another request body" in other_body.json()["error"]
            assert "model 'mlp'" in other_model.json()["error"]
            again = post([0.0] * 784)
            assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
            status = httpx.get(url + first.headers["location"], headers={"x-api-key": KEY_A})
            assert status.headers["x-tidegate-request-state"] in ("pending", "running")


def test_sqs_backend_serves_the_same_way(model_server, small_repo, tmp_path, s3_endpoint):
    from tests.support.sqs import sqs_queue_settings

    sqs = sqs_queue_settings(s3_endpoint).model_dump()
    settings = _settings(
        tmp_path, small_repo, [model_server], async_queue={"backend": "sqs", "sqs": sqs}
    )
    with serve_app(create_app(settings)) as url:
        x = np.random.default_rng(8).standard_normal((1, 784)).astype(np.float32)
        body, headers = _binary(x)
        auth = {"x-api-key": KEY_A}
        resp = httpx.post(
            url + "/v2/models/mlp/infer", content=body, headers={**headers, **auth, **ASYNC}
        )
        assert resp.status_code == 202, resp.text
        done = wait_done(url, resp.headers["location"], auth)
        assert done.status_code == 200 and done.headers["x-tidegate-path"] == "vm"
        answer = decode_response(done.content, int(done.headers["inference-header-content-length"]))
        assert np.abs(answer.outputs["output"] - reference(small_repo, "mlp", x)).max() <= 1e-5


def test_an_async_class_tenant_is_queued_when_the_deadline_allows(gateway, small_repo):
    x = np.random.default_rng(11).standard_normal((1, 784)).astype(np.float32)
    body, headers = _binary(x)
    post = lambda key: httpx.post(  # noqa: E731 - no Prefer header: the tenant's class decides
        gateway + "/v2/models/mlp/infer", content=body, headers={**headers, "x-api-key": key}
    )
    queued = post(KEY_BATCH)
    assert queued.status_code == 202, queued.text
    done = wait_done(gateway, queued.headers["location"], {"x-api-key": KEY_BATCH})
    assert done.status_code == 200 and done.headers["x-tidegate-path"] == "vm"
    answer = decode_response(done.content, int(done.headers["inference-header-content-length"]))
    assert np.abs(answer.outputs["output"] - reference(small_repo, "mlp", x)).max() <= 1e-5
    # a deadline no queue can meet: served at once, like an interactive call
    assert post(KEY_TIGHT).status_code == 200
    assert post(KEY_A).status_code == 200  # interactive


def test_a_job_queued_before_an_unload_is_tried_again_up_to_its_attempts(small_repo, tmp_path):
    """An unload then a load (a model being replaced) while jobs are queued: they are tried
    again up to max_attempts, not failed 404 at their first try after the unload (27 of 30
    jobs of a reload under load were a final 404 'unknown model')."""
    with refusing_port() as port:  # (nothing listens: the job waits, 503 after 503)
        dead = f"http://127.0.0.1:{port}"
        queue = {"retry_delay_s": 0.01, "max_attempts": 40}
        app = create_app(
            _settings(tmp_path, small_repo, [dead], async_queue=queue, admin_api_key="adm")
        )
        x = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
        auth = {"x-api-key": KEY_A}
        with serve_app(app) as url:
            resp = httpx.post(
                f"{url}/v2/models/mlp/infer", json={"inputs": [x]}, headers={**auth, **ASYNC}
            )
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["id"]
            admin = {"authorization": "Bearer adm"}
            unload = httpx.post(f"{url}/v2/repository/models/mlp/unload", headers=admin)
            assert unload.status_code == 200, unload.text
            done = wait_done(url, resp.headers["location"], auth)
            # the model never came back: after its attempts, the answer is the 404 (it was
            # also the 404 before, at the first try after the unload: the tries tell them apart)
            assert done.status_code == 404 and "mlp" in done.json()["error"]
        with sqlite3.connect(tmp_path / "async-queue.sqlite") as db:
            (attempts,) = db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert attempts == 40
