"""The async queue on Amazon SQS (aioboto3): SQS carries the work, SQLite keeps the record.

A job is one SQS message (format below). Receiving it with a visibility timeout is the lease:
a consumer that dies mid-job leaves the message invisible until the timeout runs out, then any
consumer gets it again (at-least-once). The message is deleted only after the answer is
recorded, so nothing accepted is lost.

States and answers (what ``GET /v2/requests/{id}`` reads) live in a record store: the
gateway's SQLite jobs table (``DATA_DIR/async-queue.sqlite``), chosen over the object store
because first-answer-wins needs a conditional write, which SQLite does in one statement and an
object store does not offer portably. A consequence, stated plainly: the answer is kept by the
gateway that served the job, so a fleet reading answers from any gateway uses the ``redis``
backend (or sends a caller's GETs to one gateway); SQS with several gateways still gives
competing consumers with callbacks.

Message format (``MessageBody``, UTF-8 JSON), for producers that skip HTTP::

    {"v": 1, "id": "<unique id>", "tenant": "<tenant name>", "model": "<model>",
     "version": null, "header_length": <int or null>, "created_s": <unix seconds>,
     "callback_url": null, "body_b64": "<base64 of the payload>", "body_sha256": "<hex>"}

The payload is the Open Inference Protocol request as it would be POSTed (JSON, or JSON header
+ binary tensors with ``header_length``), or a sealed envelope (``payload.py``: encrypted, and
large tensors through the object store with a pointer). ``gateway.asyncq.producer`` writes it.
``body_sha256`` (optional) is the hex sha256 of the request body before sealing: an
``Idempotency-Key`` retry is compared with it.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson

from burst.aws import AwsClient

from .config import SqsQueueSettings
from .jobs import Job, JobState, QueueStats
from .sqlite_queue import SQLiteJobQueue

MESSAGE_VERSION = 1
SQS_MAX_MESSAGE_BYTES = 256 * 1024
SQS_MAX_VISIBILITY_S = 12 * 3600


class MessageTooLarge(ValueError):
    """A job whose message would pass SQS's size limit (its payload should be claim-checked)."""


def job_message(job: Job) -> str:
    """The SQS message body of a job (the documented format above)."""
    text = orjson.dumps(
        {
            "v": MESSAGE_VERSION,
            "id": job.id,
            "tenant": job.tenant,
            "model": job.model,
            "version": job.version,
            "header_length": job.header_length,
            "created_s": job.created_s,
            "callback_url": job.callback_url,
            "body_b64": base64.b64encode(job.body).decode("ascii"),
            **({"body_sha256": job.body_sha256} if job.body_sha256 else {}),
        }
    ).decode()
    if len(text.encode()) > SQS_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"async job {job.id}: a {len(job.body)}-byte payload makes a message over SQS's "
            f"{SQS_MAX_MESSAGE_BYTES} bytes; send large tensors through the object store"
        )
    return text


def parse_message(text: str) -> Job:
    """A job from a message body; ValueError for one that is not in the format."""
    try:
        m = orjson.loads(text)
        if m.get("v") != MESSAGE_VERSION:
            raise ValueError(f"unknown message version {m.get('v')!r}")
        return Job(
            id=str(m["id"]),
            tenant=str(m["tenant"]),
            model=str(m["model"]),
            version=m.get("version"),
            body=base64.b64decode(m["body_b64"], validate=True),
            header_length=m.get("header_length"),
            created_s=float(m["created_s"]),
            callback_url=m.get("callback_url"),
            body_sha256=str(m["body_sha256"]) if m.get("body_sha256") else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a tidegate async message: {exc}") from None


class SqsJobQueue:
    """``JobQueue`` on SQS (the work) and an ``SQLiteJobQueue`` (states and answers)."""

    def __init__(self, settings: SqsQueueSettings, records_path: str | Path | None):
        """``records_path`` None: a producer's handle, whose ``put`` only sends the message
        (the consuming gateway makes the record); nothing else may be called on it."""
        self.settings = settings
        self.records = SQLiteJobQueue(records_path) if records_path is not None else None
        self._aws = AwsClient(  # botocore's own retries kept: nothing here retries
            "sqs",
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key,
            botocore_attempts=None,
        )
        self._url: str | None = settings.queue_url
        self._open_lock = asyncio.Lock()
        self._receipts: dict[str, str] = {}  # job id -> receipt handle, while we hold it
        self.skipped_messages = 0  # malformed messages deleted (logged by the caller's metrics)

    async def _sqs(self):
        sqs = await self._aws.client()
        async with self._open_lock:
            if self._url is None:
                self._url = await self._queue_url(sqs)
        return sqs

    async def _queue_url(self, sqs) -> str:
        name = self.settings.queue_name
        if self.settings.create:
            return (await sqs.create_queue(QueueName=name))["QueueUrl"]
        return (await sqs.get_queue_url(QueueName=name))["QueueUrl"]

    # -- the work ------------------------------------------------------------------------------

    async def put(self, job: Job) -> bool:
        # An id is taken once. The message goes first: a crash between the two leaves a
        # message whose consumer makes the record; the other order would leave a record
        # that no message ever serves.
        if self.records is None:
            await self._send(job)
            return True
        if await self.records.get(job.id) is not None:
            return False
        await self._send(job)
        return await self.records.put(job)

    async def _send(self, job: Job) -> None:
        sqs = await self._sqs()
        await sqs.send_message(QueueUrl=self._url, MessageBody=job_message(job))

    async def claim(self, now_s: float, lease_s: float) -> Job | None:
        sqs = await self._sqs()
        visibility_s = max(1, min(int(lease_s + 0.999), SQS_MAX_VISIBILITY_S))
        while True:
            got = await sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=1, VisibilityTimeout=visibility_s
            )
            messages = got.get("Messages") or []
            if not messages:
                return None
            message = messages[0]
            receipt = message["ReceiptHandle"]
            try:
                job = parse_message(message["Body"])
            except ValueError:
                self.skipped_messages += 1
                await sqs.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)
                continue
            await self.records.put(job)  # a producer that skipped HTTP: the record starts here
            started = await self.records.start(job.id, now_s, lease_s)
            if started == 1:
                self._receipts[job.id] = receipt
                return await self.records.get(job.id)
            if started == 0:  # answered, cancelled or expired: the message has done its work
                await sqs.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)
            # -1: a consumer holds it under a live lease; the message comes back after ours

    async def finish(
        self,
        job_id: str,
        state: JobState,
        status: int,
        result: bytes,
        headers: dict[str, str],
        now_s: float,
    ) -> bool:
        recorded = await self.records.finish(job_id, state, status, result, headers, now_s)
        await self._ack(job_id)  # only now: a crash before this serves the job again
        return recorded

    async def _ack(self, job_id: str) -> None:
        receipt = self._receipts.pop(job_id, None)
        if receipt is not None:
            sqs = await self._sqs()
            await sqs.delete_message(QueueUrl=self._url, ReceiptHandle=receipt)

    async def release(self, job_id: str) -> None:
        await self.records.release(job_id)
        receipt = self._receipts.pop(job_id, None)
        if receipt is not None:  # visible again now, not after the lease
            sqs = await self._sqs()
            await sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=receipt, VisibilityTimeout=0
            )

    async def requeue_running(self) -> int:
        """Jobs the previous process held are pending again, each with a fresh message (its
        old one is invisible until the lease runs out; the later copy finds it answered)."""
        held = await self.records.jobs_in(JobState.RUNNING)
        await self.records.requeue_running()
        for job in held:
            await self._send(job)
        return len(held)

    # -- the records ---------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobState | None:
        return await self.records.cancel(job_id)  # its message is dropped when next received

    async def delete(self, job_id: str) -> None:
        await self.records.delete(job_id)

    async def get(self, job_id: str) -> Job | None:
        return await self.records.get(job_id)

    async def mark_callback_delivered(self, job_id: str) -> None:
        await self.records.mark_callback_delivered(job_id)

    async def undelivered_callbacks(self) -> list[Job]:
        return await self.records.undelivered_callbacks()

    async def purge(self, before_s: float, discard=None) -> int:
        return await self.records.purge(before_s, discard)

    async def stats(self, now_s: float) -> QueueStats:
        """Pending: the queue's visible messages (producers that skipped HTTP included) or the
        records' count, whichever is larger (SQS's count is approximate); age from records."""
        known = await self.records.stats(now_s)
        sqs = await self._sqs()
        attrs = await sqs.get_queue_attributes(
            QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        visible = int(attrs.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
        return QueueStats(max(known.pending, visible), known.running, known.oldest_pending_age_s)

    async def close(self) -> None:
        await self._aws.close()
        if self.records is not None:
            await self.records.close()
