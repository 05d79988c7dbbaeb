"""``Idempotency-Key`` after the first request was served: its body is gone from the queue, but
a key sent again with another body is still a 422 (the job keeps the body's digest) on every
backend, and a retry with the same body is still the first 202. Old queue files still open."""

from __future__ import annotations

import sqlite3
import time

import httpx
import numpy as np
import orjson
import pytest

from gateway.app import create_app
from gateway.asyncq.idempotency import body_digest, idempotent_id
from gateway.asyncq.jobs import Job
from gateway.asyncq.payload import Part, PayloadCodec
from gateway.asyncq.producer import Producer
from gateway.asyncq.sqlite_queue import SQLiteJobQueue
from gateway.asyncq.sqs_queue import SqsJobQueue, parse_message
from tests.support.loopback import refusing_port
from tests.support.s3_server import s3_endpoint  # noqa: F401 - moto serves SQS too
from tests.support.sqs import sqs_queue_settings

from .conftest import serve_app
from .test_async import ASYNC, KEY_A, _settings, wait_done
from .test_async_sqs import _claim_within


def _body(value: float, body_id: str) -> bytes:
    x = {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [value] * 784}
    return orjson.dumps({"id": body_id, "inputs": [x]})


def _post(url: str, body: bytes, key: str, extra: dict | None = None) -> httpx.Response:
    headers = {"x-api-key": KEY_A, **ASYNC, "Idempotency-Key": key, **(extra or {})}
    headers["content-type"] = "application/json"
    return httpx.post(url + "/v2/models/mlp/infer", content=body, headers=headers)


@pytest.fixture(params=["sqlite", "redis", "sqs"])
def backend(request) -> dict:
    """The gateway settings of each queue backend (redis-server and moto on loopback)."""
    if request.param == "redis":
        return {
            "redis_url": request.getfixturevalue("redis_url"),
            "async_queue": {"backend": "redis"},
        }
    if request.param == "sqs":
        sqs = sqs_queue_settings(request.getfixturevalue("s3_endpoint")).model_dump()
        return {"async_queue": {"backend": "sqs", "sqs": sqs}}
    return {}


@pytest.mark.slow
def test_a_key_sent_again_with_another_body_after_its_job_was_served_is_a_422(
    backend, model_server, small_repo, tmp_path
):
    settings = _settings(tmp_path, small_repo, [model_server], **backend)
    first_body, other_body = _body(0.0, "item-a"), _body(1.0, "item-b")
    with serve_app(create_app(settings)) as url:
        first = _post(url, first_body, "k-1")
        assert first.status_code == 202, first.text
        served = wait_done(url, first.headers["location"], {"x-api-key": KEY_A})
        assert served.status_code == 200, served.text
        other = _post(url, other_body, "k-1")
        assert other.status_code == 422, other.text
        assert "another request body" in other.json()["error"]
        # the same body again is the retry it was (the digest is of the body as sent, not of
        # its sealed copy): the first 202's id, location and request id
        again = _post(url, first_body, "k-1")
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == first.headers["location"]
        assert again.json()["request_id"] == first.json()["request_id"] == "item-a"
        assert again.headers["x-request-id"] == first.headers["x-request-id"]
        # the 422 changed nothing: the first request's answer, and no second job
        after = httpx.get(url + first.headers["location"], headers={"x-api-key": KEY_A})
        assert after.status_code == 200 and after.content == served.content
        assert orjson.loads(after.content)["id"] == "item-a"


def test_the_same_bytes_cut_at_another_json_header_length_are_another_request(
    model_server, small_repo, tmp_path
):
    """A binary body's bytes are its JSON header and its tensors: sent again with another
    Inference-Header-Content-Length they are another request, not a retry (a 202 before).
    A JSON body with or without the header (its whole length) is the same request."""
    settings = _settings(tmp_path, small_repo, [model_server])
    json_body = _body(0.0, "item-j")
    x = np.full((1, 784), 0.25, np.float32).tobytes()
    head = orjson.dumps(
        {
            "id": "item-b",
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 784],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(x)},
                }
            ],
        }
    )
    binary = head + x
    with serve_app(create_app(settings)) as url:
        first = _post(url, binary, "k-bin", {"Inference-Header-Content-Length": str(len(head))})
        assert first.status_code == 202, first.text
        other = _post(url, binary, "k-bin", {"Inference-Header-Content-Length": str(len(head) + 8)})
        assert other.status_code == 422 and "Header-Content-Length" in other.json()["error"]
        again = _post(url, binary, "k-bin", {"Inference-Header-Content-Length": str(len(head))})
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        plain = _post(url, json_body, "k-json")
        assert plain.status_code == 202, plain.text
        same = _post(
            url, json_body, "k-json", {"Inference-Header-Content-Length": str(len(json_body))}
        )
        assert same.status_code == 202 and same.json()["id"] == plain.json()["id"]


def test_a_key_racing_its_first_request_with_another_body_is_a_422(
    small_repo, tmp_path, monkeypatch
):
    """Two POSTs with one key at once: the second's look-up misses the first's job, its put
    then finds it. With another body that is a 422 too, not a 202 for the first's job."""
    with refusing_port() as port:  # (nothing listens: the job waits, its state stays pending)
        settings = _settings(tmp_path, small_repo, [f"http://127.0.0.1:{port}"])
        with serve_app(create_app(settings)) as url:
            first = _post(url, _body(0.0, "item-a"), "k-race")
            assert first.status_code == 202, first.text
            get, missed = SQLiteJobQueue.get, []

            async def get_racing(self, job_id):  # the first look-up runs before the other put
                if not missed:
                    missed.append(job_id)
                    return None
                return await get(self, job_id)

            monkeypatch.setattr(SQLiteJobQueue, "get", get_racing)
            other = _post(url, _body(1.0, "item-b"), "k-race")
            assert missed == [first.json()["id"]]
            assert other.status_code == 422, other.text
            assert "another request body" in other.json()["error"]
            missed.clear()
            again = _post(url, _body(0.0, "item-a"), "k-race")
            assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
            assert again.json()["request_id"] == "item-a"


# the jobs table as gateways before the body digest wrote it
_OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, model TEXT NOT NULL, version TEXT,
    body BLOB NOT NULL, header_length INTEGER, callback_url TEXT, state TEXT NOT NULL,
    created_s REAL NOT NULL, lease_until_s REAL, attempts INTEGER NOT NULL DEFAULT 0,
    status INTEGER, result BLOB, result_headers TEXT, finished_s REAL,
    callback_delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state_created ON jobs (state, created_s);
"""


@pytest.mark.slow
def test_a_queue_file_from_before_the_digest_opens_and_its_jobs_are_served(
    model_server, small_repo, tmp_path
):
    body = _body(0.5, "old-item")
    job_id = idempotent_id("a", "old-key")
    db = sqlite3.connect(tmp_path / "async-queue.sqlite")
    db.executescript(_OLD_SCHEMA)
    db.execute(
        "INSERT INTO jobs (id, tenant, model, body, state, created_s) VALUES (?, ?, ?, ?, ?, ?)",
        (job_id, "a", "mlp", body, "pending", time.time()),
    )
    db.commit()
    db.close()
    with serve_app(create_app(_settings(tmp_path, small_repo, [model_server]))) as url:
        served = wait_done(url, "/v2/requests/" + job_id, {"x-api-key": KEY_A})
        assert served.status_code == 200, served.text
        assert orjson.loads(served.content)["id"] == "old-item"
        # its retry (no digest kept: only the model is compared) is the first 202
        again = _post(url, body, "old-key")
        assert again.status_code == 202 and again.json()["id"] == job_id
        assert again.json()["request_id"] == "old-item"
        # new jobs on the same file keep their digest: another body after serving is a 422
        first = _post(url, _body(0.0, "new-item"), "new-key")
        assert first.status_code == 202, first.text
        assert wait_done(url, first.headers["location"], {"x-api-key": KEY_A}).status_code == 200
        assert _post(url, _body(2.0, "other"), "new-key").status_code == 422


def _job(job_id: str, digest: str | None) -> Job:
    return Job(
        id=job_id,
        tenant="t",
        model="mlp",
        version=None,
        body=b"sealed elsewhere",
        header_length=None,
        created_s=0.0,
        body_sha256=digest,
    )


async def test_an_sqs_message_carries_the_digest_to_the_gateway_that_consumes_it(
    s3_endpoint, tmp_path
):
    settings = sqs_queue_settings(s3_endpoint)
    producer = SqsJobQueue(settings, records_path=None)  # (its put only sends the message)
    consumer = SqsJobQueue(settings, tmp_path / "records.sqlite")
    digest = body_digest(b'{"inputs": []}')
    try:
        assert await producer.put(_job("d-1", digest))
        claimed = await _claim_within(consumer, lease_s=30)
        assert claimed.id == "d-1" and claimed.body_sha256 == digest
        assert (await consumer.get("d-1")).body_sha256 == digest
        # an internal producer's job keeps the digest of its body before sealing too
        sealing = PayloadCodec(None, 64 * 1024, encrypt=True)
        x = np.ones((1, 784), np.float32)
        await Producer(producer, sealing).enqueue("t", "mlp", {"input": x}, job_id="p-1")
        claimed = await _claim_within(consumer, lease_s=30)
        body = await sealing.unpack("p-1", Part.REQUEST, claimed.body)
        assert claimed.id == "p-1" and claimed.body_sha256 == body_digest(body)
    finally:
        await producer.close()
        await consumer.close()
    # a message from an older producer, without the field, still parses (no digest: the
    # stored body is compared while it is there)
    old = {"v": 1, "id": "o", "tenant": "t", "model": "mlp", "version": None}
    old |= {"header_length": None, "created_s": 1.0, "callback_url": None, "body_b64": "e30="}
    assert parse_message(orjson.dumps(old).decode()).body_sha256 is None
