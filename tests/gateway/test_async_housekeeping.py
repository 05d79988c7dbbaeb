"""The async housekeeping's purge of expired answers keeps going when the object store fails:
the records go, the objects the store would not delete are logged, and the next tick runs."""

from __future__ import annotations

import logging

from burst.store.base import StoreError
from burst.store.factory import make_store
from gateway.asyncq.jobs import Job, JobState
from gateway.asyncq.payload import Part, PayloadCodec
from gateway.asyncq.sqlite_queue import SQLiteJobQueue


class _DeleteFails:
    """A directory store whose deletes fail (a bucket gone read-only, an expired credential)."""

    def __init__(self, inner):
        self.inner = inner
        self.deletes = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def delete(self, keys):
        self.deletes += 1
        raise StoreError("AccessDenied: the bucket refused the delete")


async def test_a_store_that_fails_to_delete_does_not_stop_the_purge(tmp_path, caplog):
    store = _DeleteFails(make_store({"kind": "dir", "root": str(tmp_path / "objects")}))
    codec = PayloadCodec(store, 1024, False)
    queue = SQLiteJobQueue(tmp_path / "q.sqlite")
    try:
        for i in range(3):  # three large answers: each one's object in the store
            job_id = f"job-{i}"
            key = codec.new_key()
            body = await codec.pack(job_id, Part.REQUEST, b"x" * 10, key)
            await queue.put(Job(job_id, "t", "m", None, body, None, created_s=float(i)))
            await queue.claim(now_s=10.0 + i, lease_s=60.0)
            answer = await codec.pack(job_id, Part.RESULT, b"y" * 64 * 1024, key)
            assert await queue.finish(job_id, JobState.DONE, 200, answer, {}, now_s=20.0)
        with caplog.at_level(logging.WARNING, logger="tidegate.async"):
            assert await queue.purge(30.0, codec.discard_expired) == 3
        assert store.deletes == 3  # each expired answer's delete tried, none stopped the rest
        assert [await queue.get(f"job-{i}") for i in range(3)] == [None, None, None]
        assert caplog.text.count("AccessDenied") == 3
    finally:
        await queue.close()
        await codec.close()
