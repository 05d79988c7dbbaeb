"""The SQS backend against moto's SQS server on loopback: lease = visibility timeout, redelivery
after a consumer dies, one answer per job, and messages written by producers that skip HTTP."""

from __future__ import annotations

import asyncio
import time

import boto3
import pytest

from gateway.asyncq.jobs import Job, JobState
from gateway.asyncq.sqs_queue import MessageTooLarge, SqsJobQueue, job_message
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION
from tests.support.s3_server import s3_endpoint  # noqa: F401 - moto serves SQS too
from tests.support.sqs import sqs_queue_settings


def _job(job_id: str, created_s: float = 0.0, body: bytes = b'{"inputs": []}') -> Job:
    return Job(
        id=job_id,
        tenant="t",
        model="mlp",
        version=None,
        body=body,
        header_length=None,
        created_s=created_s,
    )


def _raw_sqs(endpoint: str):
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )


async def _claim_within(queue: SqsJobQueue, lease_s: float, timeout_s: float = 15.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while (job := await queue.claim(time.time(), lease_s)) is None:
        assert time.monotonic() < deadline, "the message never came back"
        await asyncio.sleep(0.1)
    return job


async def test_a_dead_consumers_job_comes_back_after_its_visibility_timeout(s3_endpoint, tmp_path):
    settings = sqs_queue_settings(s3_endpoint)
    records = tmp_path / "records.sqlite"
    first = SqsJobQueue(settings, records)
    try:
        assert await first.put(_job("a"))
        lease_s, claimed_s = 1.0, time.time()  # SQS's visibility timeout is whole seconds
        assert (await first.claim(claimed_s, lease_s)).id == "a"  # then it "dies"
        # invisible while leased, asked at the claim's own time: on a loaded host the message
        # may be visible again by the next call, and the record's lease still holds it
        assert await first.claim(claimed_s, lease_s) is None
        again = await _claim_within(first, lease_s)
        assert again.id == "a" and again.attempts == 2
        # the first holder answers late, then the second: one answer is recorded
        assert await first.finish("a", JobState.DONE, 200, b"one", {}, time.time())
        assert not await first.finish("a", JobState.DONE, 200, b"two", {}, time.time())
        assert (await first.get("a")).result == b"one"
        # every message was deleted once answered: nothing left to serve
        await asyncio.sleep(lease_s + 0.2)
        assert await first.claim(time.time(), lease_s) is None
    finally:
        await first.close()


async def test_a_producer_can_skip_http_and_write_the_message_itself(s3_endpoint, tmp_path):
    settings = sqs_queue_settings(s3_endpoint)
    queue = SqsJobQueue(settings, tmp_path / "records.sqlite")
    try:
        await queue.stats(time.time())  # creates the queue
        raw = _raw_sqs(s3_endpoint)
        url = raw.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
        raw.send_message(QueueUrl=url, MessageBody="not json")  # skipped, not fatal
        raw.send_message(QueueUrl=url, MessageBody=job_message(_job("direct", created_s=7.0)))
        assert (await queue.stats(time.time())).pending == 2
        job = await queue.claim(time.time(), 30.0)
        assert job.id == "direct" and job.body == b'{"inputs": []}' and job.created_s == 7.0
        assert queue.skipped_messages == 1
        assert await queue.finish("direct", JobState.DONE, 200, b"ok", {}, time.time())
        assert (await queue.get("direct")).state == JobState.DONE  # GET can read it
    finally:
        await queue.close()


async def test_jobs_held_by_a_dead_process_are_served_again_at_once(s3_endpoint, tmp_path):
    settings = sqs_queue_settings(s3_endpoint)
    records = tmp_path / "records.sqlite"
    first = SqsJobQueue(settings, records)
    await first.put(_job("a"))
    await first.claim(time.time(), lease_s=3600.0)  # its message is invisible for an hour
    await first.close()  # the process "died" holding it
    second = SqsJobQueue(settings, records)
    try:
        assert await second.requeue_running() == 1
        job = await second.claim(time.time(), 30.0)  # a fresh message, not the hidden one
        assert job is not None and job.id == "a"
        assert await second.finish("a", JobState.DONE, 200, b"ok", {}, time.time())
    finally:
        await second.close()


def test_a_payload_too_large_for_one_message_is_a_clear_error():
    with pytest.raises(MessageTooLarge, match="object store"):
        job_message(_job("big", body=b"x" * (200 * 1024)))
