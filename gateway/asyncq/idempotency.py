"""``Idempotency-Key``: a retried async POST (its 202 lost to a timeout or a crash) finds the job
it made, and its 202 is the first one's: same id, location and request id."""

from __future__ import annotations

import hashlib

from .. import protocol
from ..errors import TidegateError
from .jobs import Job
from .payload import Part, PayloadCodec

# A client that may retry a POST whose 202 it never saw sends the same key: one job, not two.
IDEMPOTENCY_HEADER = "idempotency-key"


class KeyReused(TidegateError):
    """422: an ``Idempotency-Key`` sent again with a request other than its first."""

    status = 422


def idempotent_id(tenant: str, key: str) -> str:
    """The job id of a tenant's ``Idempotency-Key``: a retried POST finds the job it made."""
    return hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()[:32]


async def first_request_id(
    payloads: PayloadCodec, job: Job, retry_body: bytes, headers: dict[str, str], model: str
) -> str:
    """The request id the job's first 202 gave (its body's ``id``, else the job's), read from
    the stored request; from the retry's own body once that is gone (a served job's).

    A key sent again with another request is a 422 (the IETF Idempotency-Key draft): another
    model always; another body while the first one is still stored (until it is served)."""
    if job.model != model:
        raise KeyReused(f"Idempotency-Key was used for a request to model {job.model!r}")
    try:  # (a served job's request is gone: empty, or its object deleted)
        stored = await payloads.unpack(job.id, Part.REQUEST, job.body) if job.body else None
    except TidegateError:
        stored = None
    if stored:
        if stored != retry_body:
            raise KeyReused("Idempotency-Key was used for another request body")
        try:
            return protocol.decode_infer(stored, job.header_length).id or job.id
        except TidegateError:
            pass
    try:
        return protocol.decode_infer(retry_body, protocol.header_length(headers)).id or job.id
    except TidegateError:
        return job.id
