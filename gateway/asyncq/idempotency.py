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


def body_digest(body: bytes) -> str:
    """What a job keeps of its request body for retries: the sha256 of the body as received
    (not of the sealed payload, which differs with each request's key)."""
    return hashlib.sha256(body).hexdigest()


async def first_request_id(
    payloads: PayloadCodec, job: Job, retry_body: bytes, headers: dict[str, str], model: str
) -> str:
    """The request id the job's first 202 gave (its body's ``id``, else the job's), read from
    the stored request; from the retry's own body once that is gone (a served job's).

    A key sent again with another request is a 422 (the IETF Idempotency-Key draft): another
    model, or another body (by the digest the job keeps, served or not; a job queued before
    digests were kept is compared with its stored body, while that is there)."""
    if job.model != model:
        raise KeyReused(f"Idempotency-Key was used for a request to model {job.model!r}")
    if job.body_sha256 is not None and job.body_sha256 != body_digest(retry_body):
        raise KeyReused("Idempotency-Key was used for another request body")
    # the same bytes cut elsewhere into JSON and binary parts are another request (no header
    # is a body that is all JSON: the same as its whole length)
    whole = len(retry_body)
    sent = protocol.header_length(headers)
    if (job.header_length or whole) != (whole if sent is None else sent):
        raise KeyReused("Idempotency-Key was used with another Inference-Header-Content-Length")
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
