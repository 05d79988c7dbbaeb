"""Claim checks end to end: an internal producer puts a tensor too large for an SQS message
straight on the queue (moto's SQS and S3 on loopback); the gateway serves it. And a tampered
answer in the object store is a clear error, with the key nowhere but the queue's record."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest

from burst.store.encrypted import encode_key
from gateway.app import create_app
from gateway.asyncq.payload import parse
from gateway.asyncq.producer import Producer
from gateway.asyncq.sqs_queue import SQS_MAX_MESSAGE_BYTES
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION
from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: F401 - fixtures
from tests.support.sqs import sqs_queue_settings
from vmpool.codec import decode_response

from .conftest import serve_app
from .test_async import ASYNC, KEY_A, _binary, _settings, reference, wait_done


def _bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.mark.slow
def test_a_producer_skips_http_with_a_tensor_too_large_for_a_message(
    model_server, small_repo, tmp_path, s3_endpoint, s3_bucket
):
    store = {"kind": "s3", "bucket": s3_bucket, "endpoint_url": s3_endpoint, **S3_TEST_CREDENTIALS}
    sqs = sqs_queue_settings(s3_endpoint).model_dump()
    settings = _settings(
        tmp_path,
        small_repo,
        [model_server],
        async_queue={"backend": "sqs", "sqs": sqs, "store": store},
    )
    x = np.random.default_rng(9).standard_normal((4, 3, 64, 64)).astype(np.float32)
    assert x.nbytes * 4 / 3 >= SQS_MAX_MESSAGE_BYTES  # base64 inline, plus fields: too large
    producer = Producer.from_settings(settings)
    keys: list[bytes] = []
    new_key = producer.payloads.new_key
    producer.payloads.new_key = lambda: keys.append(new_key()) or keys[-1]

    async def produce() -> str:
        try:
            return await producer.enqueue("a", "resnet18", {"input": x})
        finally:
            await producer.close()

    job_id = asyncio.run(produce())  # before any gateway runs: nothing consumes it yet
    ((ref, stored),) = _bucket_objects(s3_endpoint, s3_bucket).items()
    assert ref.startswith(f"async/{job_id}/request")
    assert x.tobytes()[:64] not in stored  # ciphertext only ...
    assert keys[0] not in stored and encode_key(keys[0]).encode() not in stored  # ... no key

    with serve_app(create_app(settings)) as url:
        # a job put on the queue past HTTP is unknown (404) until a gateway takes the message
        done = wait_done(url, f"/v2/requests/{job_id}", {"x-api-key": KEY_A}, pending=(202, 404))
        assert done.status_code == 200, done.text
        assert done.headers["x-tidegate-path"] == "vm"
        answer = decode_response(done.content, int(done.headers["inference-header-content-length"]))
        want = reference(small_repo, "resnet18", x)
        assert np.abs(answer.outputs["output"] - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    # answered: the request's object is gone from the bucket
    assert not any(
        k.startswith(f"async/{job_id}/request") for k in _bucket_objects(s3_endpoint, s3_bucket)
    )


def _wait_file(root: Path, pattern: str, timeout_s: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not (found := sorted(root.glob(pattern))):
        assert time.monotonic() < deadline, f"no {pattern} under {root}"
        time.sleep(0.05)
    return found[0]


@pytest.mark.slow
def test_a_tampered_answer_is_a_clear_error_and_the_key_stays_in_the_record(
    model_server, small_repo, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="tidegate")
    # every payload through the store, to tamper with the object
    settings = _settings(
        tmp_path, small_repo, [model_server], async_queue={"inline_limit_bytes": 0}
    )
    with serve_app(create_app(settings)) as url:
        x = np.random.default_rng(10).standard_normal((2, 784)).astype(np.float32)
        body, headers = _binary(x)
        auth = {"x-api-key": KEY_A}
        resp = httpx.post(
            url + "/v2/models/mlp/infer", content=body, headers={**headers, **auth, **ASYNC}
        )
        assert resp.status_code == 202, resp.text
        location, job_id = resp.headers["location"], resp.json()["id"]
        assert wait_done(url, location, auth).status_code == 200
        with sqlite3.connect(tmp_path / "async-queue.sqlite") as db:
            (result,) = db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        key = parse(bytes(result)).key
        assert key is not None
        metrics = httpx.get(url + "/metrics").text
        obj = _wait_file(tmp_path / "objects", f"async/{job_id}/result-*")
        sealed = obj.read_bytes()
        assert key not in sealed and encode_key(key).encode() not in sealed
        obj.write_bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]))
        tampered = httpx.get(url + location, headers=auth)
        assert tampered.status_code == 500
        assert "failed its integrity check" in tampered.json()["error"]
    text = encode_key(key)
    assert text not in metrics and text not in caplog.text and key.hex() not in caplog.text
