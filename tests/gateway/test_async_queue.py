"""The queue backends (SQLite, Redis, SQS): durable writes, leases, first-answer-wins, cancellation, TTL."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gateway.asyncq.jobs import Job, JobState
from gateway.asyncq.redis_queue import RedisJobQueue
from gateway.asyncq.sqlite_queue import SQLiteJobQueue
from gateway.asyncq.sqs_queue import SqsJobQueue
from tests.support.s3_server import s3_endpoint  # noqa: F401 - moto serves SQS too
from tests.support.sqs import sqs_queue_settings


def _job(job_id: str, created_s: float = 0.0) -> Job:
    return Job(
        id=job_id,
        tenant="t",
        model="mlp",
        version=None,
        body=b'{"inputs": []}',
        header_length=None,
        created_s=created_s,
    )


@pytest.fixture(scope="module")
def redis_url():
    from tests.support.redis import redis_binary, start_redis

    if redis_binary() is None:
        pytest.skip("redis-server is not installed")
    server = start_redis()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "redis", "sqs"])
async def queue(request, tmp_path):
    """Each backend behind the JobQueue seam, passing the same tests."""
    if request.param == "sqlite":
        q = SQLiteJobQueue(tmp_path / "q.sqlite")
    elif request.param == "sqs":  # moto's SQS server on loopback
        endpoint = request.getfixturevalue("s3_endpoint")
        q = SqsJobQueue(sqs_queue_settings(endpoint), tmp_path / "records.sqlite")
    else:
        q = RedisJobQueue(
            request.getfixturevalue("redis_url"),
            result_ttl_s=3600,
            prefix=f"t-{uuid.uuid4().hex[:8]}:",
        )
    yield q
    await q.close()


async def test_oldest_first_and_first_answer_wins(queue):
    assert await queue.put(_job("a", created_s=1.0))
    assert not await queue.put(_job("a", created_s=5.0))  # an id is taken once
    await queue.put(_job("b", created_s=2.0))
    first = await queue.claim(now_s=10.0, lease_s=5.0)
    assert first.id == "a" and first.state == JobState.RUNNING and first.attempts == 1
    assert await queue.finish("a", JobState.DONE, 200, b"one", {"k": "v"}, now_s=11.0)
    assert not await queue.finish("a", JobState.DONE, 200, b"two", {}, now_s=12.0)
    done = await queue.get("a")
    assert (done.state, done.result, done.result_headers) == (JobState.DONE, b"one", {"k": "v"})
    assert done.body == b""  # answered: the request's tensors are not kept for the TTL


async def test_an_expired_lease_gives_the_job_to_another_consumer(tmp_path):
    queue = SQLiteJobQueue(tmp_path / "q.sqlite")
    await queue.put(_job("a"))
    assert (await queue.claim(now_s=0.0, lease_s=10.0)).attempts == 1
    assert await queue.claim(now_s=5.0, lease_s=10.0) is None  # still leased
    again = await queue.claim(now_s=11.0, lease_s=10.0)
    assert again.id == "a" and again.attempts == 2
    # both consumers finish: exactly one answer is recorded
    results = [
        await queue.finish("a", JobState.DONE, 200, body, {}, 12.0)
        for body in (b"first", b"second")
    ]
    assert results == [True, False] and (await queue.get("a")).result == b"first"
    await queue.close()


async def test_cancel_release_and_ttl(queue):
    await queue.put(_job("a"))
    await queue.put(_job("b", created_s=1.0))
    assert await queue.cancel("a") == JobState.PENDING
    assert (await queue.get("a")).state == JobState.CANCELLED
    claimed = await queue.claim(now_s=2.0, lease_s=10.0)
    assert claimed.id == "b"  # a cancelled job is never served
    await queue.release("b")
    assert (await queue.get("b")).state == JobState.PENDING
    assert (await queue.stats(now_s=5.0)).pending == 1
    await queue.claim(now_s=3.0, lease_s=10.0)
    await queue.finish("b", JobState.FAILED, 503, b'{"error": "x"}', {}, now_s=4.0)
    assert (await queue.get("b")).status == 503
    assert await queue.cancel("nope") is None
    if isinstance(queue, SQLiteJobQueue):  # Redis expires finished jobs by itself (EXPIRE)
        assert await queue.purge(before_s=4.0) == 0  # finished at 4.0: kept past its TTL
        assert await queue.purge(before_s=4.5) == 1
        assert await queue.get("b") is None


async def test_accepted_jobs_survive_a_new_process(tmp_path):
    path = tmp_path / "q.sqlite"
    first = SQLiteJobQueue(path)
    await first.put(_job("a"))
    await first.put(_job("b", created_s=1.0))
    await first.claim(now_s=0.0, lease_s=3600.0)  # held when the process "died"
    await first.close()
    second = SQLiteJobQueue(path)
    try:
        assert await second.requeue_running() == 1
        ids = [(await second.claim(now_s=1.0, lease_s=10.0)).id for _ in range(2)]
        assert ids == ["a", "b"]
    finally:
        await second.close()


async def test_redis_hands_a_dead_consumers_job_to_another_gateway(redis_url):
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    first = RedisJobQueue(redis_url, result_ttl_s=60, prefix=prefix, consumer="gw-1")
    second = RedisJobQueue(redis_url, result_ttl_s=60, prefix=prefix, consumer="gw-2")
    try:
        await first.put(_job("a"))
        lease_s, claimed_s = 0.2, time.time()
        assert (await first.claim(claimed_s, lease_s)).id == "a"  # then gw-1 "dies"
        # leased: asked at the claim's own time (a loaded host may take the whole 0.2 s lease
        # between two calls; the stream's idle clock alone would then hand it over already)
        assert await second.claim(claimed_s, lease_s) is None
        deadline = time.monotonic() + 10
        while (taken := await second.claim(time.time(), lease_s)) is None:
            assert time.monotonic() < deadline, "the lapsed lease was not handed over"
            await asyncio.sleep(0.05)
        assert taken.id == "a" and taken.attempts == 2
        assert await second.finish("a", JobState.DONE, 200, b"ok", {}, time.time())
        assert (await second.stats(time.time())).running == 0
    finally:
        await first.close()
        await second.close()


async def test_concurrent_puts_share_commits_and_each_lands_once(tmp_path):
    queue = SQLiteJobQueue(tmp_path / "q.sqlite")
    try:
        jobs = [_job(f"j{i}", created_s=float(i)) for i in range(200)] + [_job("j7")]
        created = await asyncio.gather(*(queue.put(j) for j in jobs))
        assert created.count(True) == 200 and created[-1] is False  # j7 twice: stored once
        assert (await queue.stats(now_s=1000.0)).pending == 200
    finally:
        await queue.close()
    reopened = SQLiteJobQueue(tmp_path / "q.sqlite")  # durable: on disk when put returned
    try:
        assert (await reopened.stats(now_s=1000.0)).pending == 200
    finally:
        await reopened.close()


def test_queue_stats_reach_the_policies_live_state():
    from gateway.live import LiveCollector

    live = LiveCollector(pool=None, burst=None, model_slos_ms={"mlp": 100.0})
    assert live.snapshot().queue.depth == 0
    live.on_queue_stats(depth=12, running=3, oldest_age_s=4.5)
    queue = live.snapshot().queue
    assert (queue.depth, queue.running, queue.oldest_age_s) == (12, 3, 4.5)
