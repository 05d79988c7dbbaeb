"""``GET`` and ``DELETE /v2/requests/{id}``: an async request's state, answer, or cancellation."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import NotFound, TidegateError
from ..routes import ERROR_SCHEMA
from ..state import GatewayState
from .jobs import JobState


def _service(state: GatewayState):
    service = getattr(state, "asyncq", None)
    if service is None:
        raise NotFound("async requests are not enabled on this gateway")
    return service


def _json(payload: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


_ERROR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
_LOOKUP = {  # documented for clients and for schema fuzzing (tests/gateway/test_fuzz_schema.py)
    401: {**_ERROR, "description": "Missing or unknown API key"},
    404: {
        **_ERROR,
        "description": "Unknown, expired or another tenant's request, or async "
        "requests not enabled",
    },
}
_ANSWER = {
    202: {"description": "Pending or running (Retry-After)"},
    410: {**_ERROR, "description": "Cancelled"},
    **{
        code: {**_ERROR, "description": "The answer the synchronous call would have had"}
        for code in (400, 403, 413, 429, 500, 503, 504)
    },
}


def requests_router(state: GatewayState) -> APIRouter:
    router = APIRouter()

    @router.get("/v2/requests/{job_id}", responses={**_LOOKUP, **_ANSWER})
    async def get_request(job_id: str, request: Request) -> Response:
        """202 while pending or running; then the answer the synchronous call would have had."""
        service = _service(state)
        job = await service.lookup(job_id, dict(request.headers))
        headers = {"x-request-id": job.id, "x-tidegate-request-state": job.state.value}
        if job.state in (JobState.PENDING, JobState.RUNNING):
            return _json(
                orjson.dumps({"id": job.id, "state": job.state.value}),
                202,
                {**headers, "retry-after": "1"},
            )
        if job.state == JobState.CANCELLED:
            raise TidegateError(f"async request {job_id!r} was cancelled", 410)
        headers.update(job.result_headers)
        headers["x-tidegate-request-state"] = job.state.value
        media = headers.pop("content-type", "application/json")
        answer = await service.answer(job)  # unsealed; a tampered one is a clear 500
        return Response(answer, status_code=job.status or 500, media_type=media, headers=headers)

    @router.delete("/v2/requests/{job_id}", responses=_LOOKUP)
    async def delete_request(job_id: str, request: Request) -> Response:
        """Cancel a pending or running request; for a finished one, drop its stored answer."""
        before = await _service(state).cancel(job_id, dict(request.headers))

        return _json(
            orjson.dumps({"id": job_id, "state": before.value}), 200, {"x-request-id": job_id}
        )

    return router
