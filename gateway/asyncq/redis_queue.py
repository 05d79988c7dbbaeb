"""The async queue on Redis, shared by a fleet of gateways: a stream with a consumer group.

Each job is a hash ``{prefix}job:{id}`` (the request, its state and answer); the stream
``{prefix}jobs`` carries job ids to the group's consumers (one per gateway process). A claimed
entry stays in the group's pending list until the answer is written; one idle for longer than
the lease is taken over by another gateway (XAUTOCLAIM), so a gateway that dies mid-job loses
nothing (at-least-once). State changes run as Lua scripts, so the first answer wins and a
cancelled job is never answered. Finished jobs expire with the result TTL (Redis EXPIRE).
An answer claim-checked into the object store is also listed in the sorted set
``{prefix}expiring`` (its envelope, scored by when it finished); the housekeeping's purge takes
those past the TTL off the set and deletes their objects (the gateway whose ZREM removed an
entry deletes it, so a fleet deletes each once), as Redis's EXPIRE cannot reach the store.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` (or everysec,
accepting up to a second of acknowledged jobs at risk) for the promise a 202 makes.

Message format for producers that skip HTTP: ``HSET {prefix}job:{id} tenant T model M body B
header_length N state pending created_s S [version V] [callback_url U] [body_sha256 H]`` then
``XADD {prefix}jobs * id {id}``; the body is the Open Inference Protocol request as it would be
POSTed (JSON, or JSON header + binary tensors with ``header_length``); ``body_sha256`` is the
hex sha256 of that body before sealing (an ``Idempotency-Key`` retry is compared with it).
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .jobs import Job, JobState, QueueStats
from .payload import claim_checked

GROUP = "tidegate"
_PURGE_BATCH = 256

# KEYS[1] job hash, KEYS[2] stream; ARGV: id, then field, value pairs. 0 if the id exists.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
return 1
"""
# KEYS[1] job hash; ARGV: now, lease_until. 1: started (pending, or a lapsed lease);
# 0: nothing to do (finished, cancelled, expired); -1: still leased by another consumer.
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' and
    tonumber(redis.call('HGET', KEYS[1], 'lease_until_s') or '0') >= tonumber(ARGV[1]) then
  return -1
end
if state == 'pending' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'lease_until_s', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  return 1
end
return 0
"""
# KEYS[1] job hash, KEYS[2] callbacks set, KEYS[3] expiring set; ARGV: state, status, result,
# headers, now, ttl, id, 1 if the result is claim-checked (its object outlives the hash's TTL)
_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'status', ARGV[2], 'result', ARGV[3],
           'result_headers', ARGV[4], 'finished_s', ARGV[5], 'lease_until_s', '0', 'body', '')
redis.call('EXPIRE', KEYS[1], ARGV[6])
if ARGV[8] == '1' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3]) end
if redis.call('HGET', KEYS[1], 'callback_url') then redis.call('SADD', KEYS[2], ARGV[7]) end
return 1
"""
# KEYS[1] job hash; returns the state before ('' if unknown)
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return '' end
if state == 'pending' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'body', '', 'finished_s', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return state
"""
# KEYS[1] job hash, KEYS[2] stream; ARGV: id, group, the entry a previous process of this
# consumer held. A job it left running is pending again under a fresh entry; the old one goes.
_TAKE_BACK = """
local back = 0
if redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'lease_until_s', 0)
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
  back = 1
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
return back
"""


def consumer_name(data_dir) -> str:
    """A gateway's consumer name: its host and data directory. One process holds a data
    directory at a time, so the entries this name holds at start are a dead predecessor's."""
    where = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    return f"{socket.gethostname()}-{where}"


def _s(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _job(job_id: str, h: dict) -> Job:
    def get(name):
        return h.get(name.encode())

    def num(name, cast, default=None):
        raw = get(name)
        return cast(raw) if raw not in (None, b"") else default

    headers = get("result_headers")
    return Job(
        id=job_id,
        tenant=_s(get("tenant")),
        model=_s(get("model")),
        version=_s(get("version")) or None,
        body=get("body") or b"",
        header_length=num("header_length", int),
        created_s=num("created_s", float, 0.0),
        callback_url=_s(get("callback_url")) or None,
        state=JobState(_s(get("state"))),
        attempts=num("attempts", int, 0),
        status=num("status", int),
        result=get("result"),
        result_headers=orjson.loads(headers) if headers else {},
        finished_s=num("finished_s", float),
        callback_delivered=bool(num("callback_delivered", int, 0)),
        body_sha256=_s(get("body_sha256")) or None,
    )


class RedisJobQueue:
    def __init__(
        self,
        url: str,
        *,
        result_ttl_s: float,
        prefix: str = "tidegate:async:",
        consumer: str | None = None,
    ):
        self._redis = aioredis.from_url(url)
        self.prefix = prefix
        self.stream = prefix + "jobs"
        self.callbacks = prefix + "callbacks"
        self.expiring = prefix + "expiring"
        self.ttl_s = max(1, int(result_ttl_s))
        self.consumer = consumer or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._put = self._redis.register_script(_PUT)
        self._start = self._redis.register_script(_START)
        self._finish = self._redis.register_script(_FINISH)
        self._cancel = self._redis.register_script(_CANCEL)
        self._take_back = self._redis.register_script(_TAKE_BACK)
        self._entries: dict[str, bytes] = {}  # job id -> its stream entry, while we hold it
        self._group_ready = False

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    async def _group(self) -> None:
        if not self._group_ready:
            try:
                await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._group_ready = True

    async def put(self, job: Job) -> bool:
        await self._group()
        fields = {
            "tenant": job.tenant,
            "model": job.model,
            "body": job.body,
            "state": job.state.value,
            "created_s": repr(job.created_s),
            "attempts": 0,
        }
        if job.version:
            fields["version"] = job.version
        if job.header_length is not None:
            fields["header_length"] = job.header_length
        if job.callback_url:
            fields["callback_url"] = job.callback_url
        if job.body_sha256:
            fields["body_sha256"] = job.body_sha256
        args = [job.id] + [v for pair in fields.items() for v in pair]
        return bool(await self._put(keys=[self._key(job.id), self.stream], args=args))

    async def claim(self, now_s: float, lease_s: float) -> Job | None:
        await self._group()
        while entries := await self._next_entries(lease_s):
            for entry_id, fields in entries:
                job_id = _s(fields[b"id"])
                started = await self._start(keys=[self._key(job_id)], args=[now_s, now_s + lease_s])
                if started == 1:
                    self._entries[job_id] = entry_id
                    return await self.get(job_id)
                if started == 0:  # cancelled, done or expired: the entry has served its purpose
                    await self._drop(entry_id)
                # -1: its holder's lease has not lapsed by the hash's clock; it stays pending
        return None

    async def _next_entries(self, lease_s: float) -> list:
        """What another consumer held past its lease first, else one new entry. A claimed
        entry's idle time starts again, so this loop moves on."""
        _, stale, _ = await self._redis.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=int(lease_s * 1000), count=1
        )
        if stale:
            return stale
        read = await self._redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=1)
        return [entry for _, batch in read for entry in batch]

    async def _drop(self, entry_id) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def finish(
        self,
        job_id: str,
        state: JobState,
        status: int,
        result: bytes,
        headers: dict[str, str],
        now_s: float,
    ) -> bool:
        recorded = await self._finish(
            keys=[self._key(job_id), self.callbacks, self.expiring],
            args=[
                *(state.value, status, result, orjson.dumps(headers), now_s, self.ttl_s, job_id),
                int(claim_checked(result)),
            ],
        )
        await self._ack(job_id)
        return bool(recorded)

    async def _ack(self, job_id: str) -> None:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            await self._drop(entry)

    async def release(self, job_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(job_id), mapping={"state": "pending", "lease_until_s": 0})
            pipe.xadd(self.stream, {"id": job_id})  # a fresh entry; the old one is acked
            await pipe.execute()
        await self._ack(job_id)

    async def cancel(self, job_id: str) -> JobState | None:
        before = _s(await self._cancel(keys=[self._key(job_id)], args=[time.time(), self.ttl_s]))
        return JobState(before) if before else None

    async def delete(self, job_id: str) -> None:
        await self._redis.delete(self._key(job_id))

    async def get(self, job_id: str) -> Job | None:
        h = await self._redis.hgetall(self._key(job_id))
        return _job(job_id, h) if h else None

    async def requeue_running(self) -> int:
        """Jobs this consumer name held when its previous process died are pending again at
        once (another gateway's lapsed leases are handed over by XAUTOCLAIM in ``claim``)."""
        await self._group()
        taken = 0
        while held := await self._redis.xreadgroup(
            GROUP, self.consumer, {self.stream: "0"}, count=100
        ):
            entries = [entry for _, batch in held for entry in batch]
            if not entries:
                break
            for entry_id, fields in entries:
                job_id = _s((fields or {}).get(b"id"))  # (a deleted entry has no fields)
                keys = [self._key(job_id or ""), self.stream]
                taken += await self._take_back(keys=keys, args=[job_id or "", GROUP, entry_id])
        return taken

    async def mark_callback_delivered(self, job_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(job_id), "callback_delivered", 1)
            pipe.srem(self.callbacks, job_id)
            await pipe.execute()

    async def undelivered_callbacks(self) -> list[Job]:
        jobs = []
        for raw in await self._redis.smembers(self.callbacks):
            job = await self.get(_s(raw))
            if job is None:
                await self._redis.srem(self.callbacks, raw)
            else:
                jobs.append(job)
        return jobs

    async def purge(self, before_s: float, discard=None) -> int:
        """Finished jobs carry a Redis TTL; their claim-checked answers' objects go here."""
        purged = 0
        while True:
            due = await self._redis.zrangebyscore(
                self.expiring, "-inf", f"({before_s!r}", start=0, num=_PURGE_BATCH
            )
            for blob in due:
                if await self._redis.zrem(self.expiring, blob):  # 0: another gateway took it
                    purged += 1
                    if discard is not None:
                        await discard(bytes(blob))
            if len(due) < _PURGE_BATCH:
                return purged

    async def stats(self, now_s: float) -> QueueStats:
        await self._group()
        groups = await self._redis.xinfo_groups(self.stream)
        group = next((g for g in groups if _s(g["name"]) == GROUP), None)
        if group is None:
            return QueueStats(0, 0, 0.0)
        waiting = int(group.get("lag") or 0)
        oldest = 0.0
        if waiting:
            after = _s(group["last-delivered-id"])
            first = await self._redis.xrange(self.stream, min="(" + after, count=1)
            if first:
                oldest = max(0.0, now_s - int(_s(first[0][0]).split("-")[0]) / 1000.0)
        return QueueStats(
            pending=waiting, running=int(group.get("pending") or 0), oldest_pending_age_s=oldest
        )

    async def close(self) -> None:
        await self._redis.aclose()
