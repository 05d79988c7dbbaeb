"""A gateway on the Redis queue restarted after a SIGKILL: the jobs it held are served at once.

They used to wait out their lease (`lease_s`, 300 s by default) before XAUTOCLAIM handed them
over, since each process joined the group under a new random name: on one gateway, a crash
delayed the jobs it was running by five minutes (and with a short `result_ttl_s` the answers
finished before them had expired by the time a client polling in order reached them).
"""

from __future__ import annotations

import time
import uuid

from gateway.asyncq.jobs import Job, JobState
from gateway.asyncq.redis_queue import RedisJobQueue, consumer_name
from gateway.asyncq.wiring import make_queue
from gateway.settings import Settings


def _job(job_id: str) -> Job:
    return Job(job_id, "t", "mlp", None, b"{}", None, created_s=time.time())


async def test_a_restarted_gateway_takes_back_what_it_held(redis_url):
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    lease_s = 300.0
    first = RedisJobQueue(redis_url, result_ttl_s=60, prefix=prefix, consumer="gw-1")
    try:
        for job_id in ("a", "b", "c"):
            assert await first.put(_job(job_id))
        assert (await first.claim(time.time(), lease_s)).id == "a"
        assert (await first.claim(time.time(), lease_s)).id == "b"
        assert await first.finish("b", JobState.DONE, 200, b"ok", {}, time.time())
    finally:
        await first.close()  # then it "dies" holding "a"
    again = RedisJobQueue(redis_url, result_ttl_s=60, prefix=prefix, consumer="gw-1")
    try:
        assert await again.requeue_running() == 1
        served = [(await again.claim(time.time(), lease_s)) for _ in range(3)]
        assert sorted(j.id for j in served if j is not None) == ["a", "c"]
        assert {j.id: j.attempts for j in served if j is not None}["a"] == 2
        assert (await again.get("b")).state == JobState.DONE  # a finished job stays finished
        stats = await again.stats(time.time())
        assert (stats.pending, stats.running) == (0, 2)
        assert await again.requeue_running() == 2  # (and a second start takes back both)
    finally:
        await again.close()


def test_the_consumer_name_is_the_gateways_host_and_data_dir(tmp_path, redis_url):
    def settings(data):
        return Settings.load(
            None, data_dir=data, redis_url=redis_url, async_queue={"backend": "redis"}
        )

    assert make_queue(settings(tmp_path / "a")).consumer == consumer_name(tmp_path / "a")
    assert consumer_name(tmp_path / "a") == consumer_name(tmp_path / "x" / ".." / "a")
    assert consumer_name(tmp_path / "a") != consumer_name(tmp_path / "b")
