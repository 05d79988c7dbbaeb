"""An async answer too large for the queue's record goes to the object store (claim check);
once it expires (``result_ttl_s``) its object goes too. Found reviewing what grows under a
soak (ops/bench/soak.py): the housekeeping purge deleted the expired jobs' records only, so
every large answer stayed in the store for as long as the store lived (a model with large
outputs, served asynchronously, filled the disk or the bucket)."""

from __future__ import annotations

from pathlib import Path

import pytest

from burst.store.factory import make_store
from gateway.asyncq.jobs import Job, JobState
from gateway.asyncq.payload import Part, PayloadCodec
from gateway.asyncq.sqlite_queue import SQLiteJobQueue


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def _answer_three(queue, codec: PayloadCodec) -> None:
    """Jobs 0-2 put, claimed and answered at 20, 21 and 22 s: job-0's answer inline, the other
    two's claim-checked into the store."""
    for i, size in enumerate((100, 64 * 1024, 64 * 1024)):
        job_id = f"job-{i}"
        key = codec.new_key()
        body = await codec.pack(job_id, Part.REQUEST, b"x" * 10, key)
        await queue.put(Job(job_id, "t", "m", None, body, None, created_s=float(i)))
        assert (await queue.claim(now_s=10.0 + i, lease_s=60.0)).id == job_id
        answer = await codec.pack(job_id, Part.RESULT, b"y" * size, key)
        assert await queue.finish(job_id, JobState.DONE, 200, answer, {}, now_s=20.0 + i)


@pytest.mark.parametrize("encrypt", [True, False])
async def test_an_expired_answer_leaves_nothing_in_the_store(tmp_path, encrypt):
    root = tmp_path / "objects"
    codec = PayloadCodec(make_store({"kind": "dir", "root": str(root)}), 1024, encrypt)
    queue = SQLiteJobQueue(tmp_path / "q.sqlite")
    try:
        await _answer_three(queue, codec)
        assert len(_files(root)) == 2  # the two large answers, kept for their TTL
        # the housekeeping's purge: job-0 and job-1 expired, job-2 not yet
        assert await queue.purge(21.5, codec.discard) == 2
        kept = _files(root)
        assert [p.name.split("-")[0] for p in kept] == ["result"]
        assert "job-2" in str(kept[0])
        assert await queue.get("job-2") is not None and await queue.get("job-1") is None
    finally:
        await queue.close()
        await codec.close()


async def test_redis_expired_answers_leave_nothing_in_the_store(tmp_path, redis_url):
    """Redis expires a finished job's hash by itself (EXPIRE), which never reached the store:
    a large answer's object stayed there for good. The purge now deletes those past the TTL,
    each once across gateways sharing the Redis."""
    from gateway.asyncq.redis_queue import RedisJobQueue

    root = tmp_path / "objects"
    codec = PayloadCodec(make_store({"kind": "dir", "root": str(root)}), 1024, True)
    gateways = [
        RedisJobQueue(redis_url, result_ttl_s=3600, prefix="soak:", consumer=f"gw-{i}")
        for i in range(2)
    ]
    first, second = gateways
    deleted: list[bytes] = []

    async def discard(blob: bytes) -> None:
        deleted.append(blob)
        await codec.discard(blob)

    try:
        await _answer_three(first, codec)
        assert len(_files(root)) == 2  # the two large answers, kept for their TTL
        assert await second.purge(20.5, discard) == 0  # job-1 finished at 21: not yet due
        # two gateways purge at once: job-1's object goes, once; job-2's stays
        counts = [await g.purge(21.5, discard) for g in gateways]
        assert sorted(counts) == [0, 1] and len(deleted) == 1
        kept = _files(root)
        assert len(kept) == 1 and "job-2" in str(kept[0])
        assert await first.purge(1e12, discard) == 1 and _files(root) == []
    finally:
        for g in gateways:
            await g.close()
        await codec.close()
