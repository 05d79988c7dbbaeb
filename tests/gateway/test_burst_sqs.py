"""The burst path with tensors through SQS (moto on loopback), claim checks in S3 on the same
server, through the gateway and real function processes: the answer equals the VM path, the
tensors really crossed the queues, and the per-request key never reaches SQS, S3, the function
logs or the metrics."""

from __future__ import annotations

import io
import uuid

import httpx
import numpy as np
import pytest

import burst.store.encrypted as encrypted
from burst.service import BurstService
from gateway.app import create_app
from gateway.settings import Settings
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, moto_server

from .conftest import post_routed, serve_app

pytestmark = pytest.mark.slow


class WireRecorder:
    """WSGI middleware in front of moto: every request's AWS target and body."""

    def __init__(self, app):
        self.app, self.calls = app, []

    def __call__(self, environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        environ["wsgi.input"] = io.BytesIO(body)
        self.calls.append((environ.get("HTTP_X_AMZ_TARGET", environ["REQUEST_METHOD"]), body))
        return self.app(environ, start_response)


@pytest.fixture
def recorded_moto():
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_server() as (endpoint, server):
        recorder = WireRecorder(server._server.app)
        server._server.app = recorder  # werkzeug reads .app per request
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
        )
        s3.create_bucket(Bucket="claims")
        yield endpoint, recorder


def test_burst_through_sealed_sqs_equals_the_vm_path_and_keys_stay_in_payloads(
    model_server, small_repo, tmp_path, recorded_moto, monkeypatch
):
    endpoint, recorder = recorded_moto
    aws = {"endpoint_url": endpoint, "region": S3_TEST_REGION, **S3_TEST_CREDENTIALS}
    prefix = f"g{uuid.uuid4().hex[:6]}-"
    store = {"kind": "sqs", "queue_prefix": prefix, **aws}  # encrypt: on by default for sqs
    store["backing"] = {"kind": "s3", "bucket": "claims", **aws}
    keys: list[bytes] = []
    make_key = encrypted.new_request_key
    monkeypatch.setattr(encrypted, "new_request_key", lambda: keys.append(make_key()) or keys[-1])
    # the planner keeps ResNet-18 at 64x64 whole: tile it so tensors cross the queues
    svc = BurstService(
        small_repo,
        platform={"kind": "local"},
        store=store,
        memory_mb=1024,
        concurrency=6,
        log_dir=tmp_path / "logs",
        split="spatial",
        transport="queue",
        max_workers=2,
    )
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": True, "store": store, "transport": "queue"},
    )
    x = np.random.default_rng(11).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with serve_app(create_app(settings, burst=svc)) as url:
        vm = post_routed(url, x, "vm")
        burst = [post_routed(url, x, "burst") for _ in range(2)]
        metrics = httpx.get(url + "/metrics", timeout=30).text
    for out in burst:
        assert np.abs(out - vm).max() <= 1e-5 * max(1.0, np.abs(vm).max())
    targets = [t for t, _ in recorder.calls]
    sends = targets.count("AmazonSQS.SendMessage")
    assert sends >= 4 and targets.count("AmazonSQS.ReceiveMessage") >= sends
    assert targets.count("AmazonSQS.DeleteQueue") >= targets.count("AmazonSQS.CreateQueue") > 0
    assert len(keys) == 2
    secrets = [k for key in keys for k in (key, encrypted.encode_key(key).encode())]
    wire = b"".join(body for _, body in recorder.calls)
    logs = b"".join(p.read_bytes() for p in (tmp_path / "logs").glob("*.log"))
    for secret in secrets:
        assert secret not in wire  # neither SQS messages nor S3 objects nor any call carry it
        assert secret not in logs
    for key in keys:
        assert encrypted.encode_key(key) not in metrics
    assert b"tensor_key" not in logs
