"""Internal producers that skip HTTP: put a request straight on the gateway's queue.

A batch job beside the fleet builds the same message the gateway would (``docs/async.md``):
the tensors as an Open Inference Protocol binary body, sealed under a fresh per-request key,
inline when small and through the object store (claim check) when large. A gateway consuming
that queue serves it; the caller reads ``GET /v2/requests/{id}`` as its tenant.

    producer = Producer.from_settings(Settings.load("tidegate.toml"))
    job_id = await producer.enqueue("batch-tenant", "resnet18", {"input": x})
    await producer.close()

Admission (rate limits, quotas) is the producer's business here: it is inside the fleet.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from vmpool.codec import encode_request

from .idempotency import body_digest
from .jobs import Job, JobQueue
from .payload import Part, PayloadCodec
from .wiring import make_payloads


class Producer:
    def __init__(self, queue: JobQueue, payloads: PayloadCodec, clock=time.time):
        self.queue = queue
        self.payloads = payloads
        self.clock = clock

    @classmethod
    def from_settings(cls, settings) -> "Producer":
        """The queue and store a gateway with ``settings`` consumes (redis or sqs backend)."""
        backend = settings.async_queue.backend
        if backend == "sqs":
            from .sqs_queue import SqsJobQueue

            queue: JobQueue = SqsJobQueue(settings.async_queue.sqs, records_path=None)
        elif backend == "redis" and settings.redis_url:
            from .redis_queue import RedisJobQueue

            queue = RedisJobQueue(
                settings.redis_url, result_ttl_s=settings.async_queue.result_ttl_s
            )
        else:
            raise ValueError(
                "producers that skip HTTP need a shared queue: async_queue.backend = "
                "'sqs' or 'redis' (with redis_url); the sqlite queue belongs to one gateway"
            )
        return cls(queue, make_payloads(settings))

    async def enqueue(
        self,
        tenant: str,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        version: str | None = None,
        job_id: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Queue one request; its id (``/v2/requests/{id}``). A ``job_id`` already taken is a
        ValueError on the queues that can tell (redis); SQS drops the second at consumption."""
        job_id = job_id or uuid.uuid4().hex
        body, header_length = encode_request(inputs)
        sealed = await self.payloads.pack(job_id, Part.REQUEST, body, self.payloads.new_key())
        job = Job(
            id=job_id,
            tenant=tenant,
            model=model,
            version=version,
            body=sealed,
            header_length=header_length,
            created_s=self.clock(),
            callback_url=callback_url,
            body_sha256=body_digest(body),
        )
        if not await self.queue.put(job):
            await self.payloads.discard(sealed)
            raise ValueError(f"async request id {job_id!r} is taken")
        return job_id

    async def close(self) -> None:
        await self.queue.close()
        await self.payloads.close()
