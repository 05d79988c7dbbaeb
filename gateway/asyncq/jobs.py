"""What the async mode keeps per request, and the seam every queue backend implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class JobState(str, enum.Enum):
    PENDING = "pending"  # accepted, waiting for a consumer
    RUNNING = "running"  # claimed by a consumer (until its lease runs out)
    DONE = "done"  # answered 200; the result is kept for the TTL
    FAILED = "failed"  # answered with an error; kept for the TTL like a result
    CANCELLED = "cancelled"  # DELETE before it finished

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    """One async request: its Open Inference Protocol body as received, then its answer."""

    id: str
    tenant: str
    model: str
    version: str | None
    # the payload (plain, or a sealed envelope holding the request's key: see payload.py);
    # never in a repr, so a logged Job cannot leak the key
    body: bytes = field(repr=False)
    header_length: int | None  # Inference-Header-Content-Length of a binary body
    created_s: float
    callback_url: str | None = None
    state: JobState = JobState.PENDING
    attempts: int = 0
    # the answer, in the shape the synchronous endpoint gives: status, body, headers
    status: int | None = None
    result: bytes | None = field(default=None, repr=False)
    result_headers: dict[str, str] = field(default_factory=dict)
    finished_s: float | None = None
    callback_delivered: bool = False
    # sha256 hex of the request body as received (before sealing), kept after the body is
    # dropped: an Idempotency-Key's retry with another body is refused (idempotency.py).
    # None for jobs queued before it was kept, and for producers that do not set it.
    body_sha256: str | None = None


@dataclass
class QueueStats:
    pending: int
    running: int
    oldest_pending_age_s: float


class JobQueue(Protocol):
    """A durable queue of jobs with results. Every write is durable when the call returns."""

    async def put(self, job: Job) -> bool:
        """Store a new job; False (and nothing changed) if a job with its id exists."""
        ...

    async def claim(self, now_s: float, lease_s: float) -> Job | None:
        """The oldest pending job (or a running one whose lease ran out), now RUNNING."""
        ...

    async def finish(
        self,
        job_id: str,
        state: JobState,
        status: int,
        result: bytes,
        headers: dict[str, str],
        now_s: float,
    ) -> bool:
        """Record the answer if the job is still RUNNING; True if this call recorded it (the
        first answer wins: a second consumer's later write changes nothing)."""
        ...

    async def release(self, job_id: str) -> None:
        """Put a RUNNING job back to PENDING (it could not be served now; tried again later)."""
        ...

    async def cancel(self, job_id: str) -> JobState | None:
        """Cancel a pending or running job; return its state before, None if unknown."""
        ...

    async def delete(self, job_id: str) -> None: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def requeue_running(self) -> int:
        """At start: jobs a previous process held are pending again; return how many."""
        ...

    async def mark_callback_delivered(self, job_id: str) -> None: ...

    async def undelivered_callbacks(self) -> list[Job]: ...

    async def purge(self, before_s: float, discard=None) -> int:
        """Delete finished jobs that finished before ``before_s``; return how many. ``discard``
        is awaited with each one's stored answer (its claim-checked object goes with it)."""
        ...

    async def stats(self, now_s: float) -> QueueStats: ...

    async def close(self) -> None: ...
