"""Serving one async job: its request through ``Dispatcher.infer`` on the VM path, and the
answer exactly as the synchronous endpoint would have given it (status, body, headers)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import protocol
from ..call import CallContext
from ..errors import TidegateError, Unauthorized
from .jobs import Job, JobState

log = logging.getLogger("tidegate.async")


@dataclass
class Outcome:
    state: JobState
    status: int
    body: bytes
    headers: dict[str, str]
    error: TidegateError | None = None  # what failed it (a 503 may be worth a retry)


def failed(job: Job, exc: TidegateError) -> Outcome:
    return Outcome(
        JobState.FAILED,
        exc.status,
        protocol.error_body(exc.message),
        {"content-type": "application/json", "x-request-id": job.id},
        exc,
    )


async def run(dispatcher, job: Job, body: bytes, on_dispatch=None) -> Outcome:
    """The answer to ``job`` whose request body is ``body`` (already unsealed). ``on_dispatch``
    is called just before the dispatcher takes it: its forced VM route reaches the pool's
    count of outstanding requests without an await in between."""
    try:
        tenant = dispatcher.tenants.get(job.tenant)
        if tenant is None:
            raise Unauthorized(f"tenant {job.tenant!r} is no longer configured")
        cfg = dispatcher.model(job.model, job.version)
        req = protocol.decode_infer(body, job.header_length)
        ctx = CallContext(
            tenant=tenant,
            model=job.model,
            version=job.version,
            forced_route="vm",  # async work fills VM capacity; it never spills to functions
            request_id=job.id,
            admitted=True,
        )
        if on_dispatch is not None:
            on_dispatch()
        result = await dispatcher.infer(ctx, req)
        out, headers = protocol.infer_response(
            cfg,
            req,
            result.outputs,
            {
                "x-tidegate-path": result.path,
                "x-request-id": job.id,
                "x-tidegate-cost-usd": f"{result.cost_usd:.10f}",
            },
        )
        return Outcome(JobState.DONE, 200, out, headers)
    except TidegateError as exc:
        return failed(job, exc)
    except Exception as exc:  # recorded as the synchronous endpoint would answer it
        log.exception("async job %s failed", job.id)
        return failed(job, TidegateError(f"internal error: {type(exc).__name__}", 500))
