"""The model server's HTTP face: Open Inference Protocol v2 REST in front of ``ModelServer``.

Infer is served at the ASGI level (``InferEndpoint``): no routing or request objects on the hot
path. Health, metadata, config, statistics, the repository extension and /metrics are FastAPI
routes; every error is ``{"error": ...}`` with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from pathlib import Path
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmpool.heap import trim_heap
from vmpool.artifact import ArtifactError
from vmpool.body import BodyBudget, ClientGone, decode_content, read_body
from vmpool.codec_encoding import encode_content
from vmpool.dataplane import ModelServer, ModelServerError
from vmpool.validation import repository_parameters
from vmpool.wire import (
    HEADER_LENGTH_KEY,
    LIVE_BODY,
    NOT_READY_BODY,
    READY_BODY,
    CodecError,
    error_body,
    model_config,
    model_ready_body,
    parse_header_length,
    server_metadata,
)

SERVER_NAME = "tidegate-model-server"
JSON = "application/json"
log = logging.getLogger("tidegate.model_server")
_HEADER_LENGTH_KEY = HEADER_LENGTH_KEY.encode()
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def infer_target(scope) -> tuple[str, str | None] | None:
    """``(model, version)``, percent-decoded, of an HTTP request (any method) to
    ``/v2/models/{m}[/versions/{v}]/infer``; None for every other request. The model server's and
    the gateway's ASGI infer endpoints both answer what this matches."""
    if scope["type"] != "http":
        return None
    match = INFER_PATH.match(scope["path"])
    if match is None:
        return None
    return unquote(match[1]), unquote(match[2]) if match[2] else None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tidegate")
    except Exception:  # running from a source tree that is not installed
        return "0.1.0"


class FrontedApp(FastAPI):
    """FastAPI, with ``front`` (the infer endpoint) before FastAPI's own middleware stack.

    FastAPI wraps every request in its middleware (server errors, telemetry, body limit,
    exceptions): a fifth of the gateway's time on the hot path under py-spy. ``front`` answers
    infer and hands everything else to ``rest``, the whole FastAPI app."""

    front = None

    @property
    def rest(self):
        return functools.partial(FastAPI.__call__, self)

    async def __call__(self, scope, receive, send):
        if self.front is None:
            return await FastAPI.__call__(self, scope, receive, send)
        await self.front(scope, receive, send)


def _error(message: str, status: int, headers: dict | None = None) -> Response:
    return Response(error_body(message), status_code=status, media_type=JSON, headers=headers)


def create_model_server_app(
    repo: str | Path,
    models: list[str] | None = None,
    *,
    threads: int = 1,
    max_body_mb: float = 64,
    max_batch_size: int | None = None,
    max_queue_delay_ms: float | None = None,
    max_inflight_body_mb: float | None = None,
    body_timeout_s: float | None = 60.0,
) -> FastAPI:
    """A FastAPI app serving ``models`` (None: all) of ``repo``; overrides replace config values."""
    if max_body_mb <= 0:
        raise ValueError(f"max_body_mb must be positive, got {max_body_mb}")
    core = ModelServer(
        repo,
        models,
        threads=threads,
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(trim_heap)  # what loading the models freed, back to the system
        yield
        await asyncio.to_thread(core.close)

    app = FrontedApp(
        title=SERVER_NAME, lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.model_server = core

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(ModelServerError)
    @app.exception_handler(CodecError)  # a control request's body (vmpool.body.read_body)
    async def core_error(request: Request, exc: ModelServerError | CodecError) -> Response:
        return _error(exc.message, exc.status, exc.headers or None)

    app.include_router(protocol_router(core))
    app.include_router(repository_router(core))
    budget = BodyBudget(
        None if max_inflight_body_mb is None else int(max_inflight_body_mb * 1024 * 1024)
    )
    app.front = InferEndpoint(
        app.rest,
        core=core,
        limit_bytes=int(max_body_mb * 1024 * 1024),
        budget=budget,
        body_timeout_s=body_timeout_s,
    )
    return app


def protocol_router(core: ModelServer) -> APIRouter:
    router = APIRouter()
    metadata = orjson.dumps(server_metadata(SERVER_NAME, _version()))

    @router.get("/v2")
    async def server_metadata_endpoint() -> Response:
        return Response(metadata, media_type=JSON)

    @router.get("/v2/health/live")
    async def live() -> Response:
        return Response(LIVE_BODY, media_type=JSON)

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(
            READY_BODY if core.ready else NOT_READY_BODY,
            status_code=200 if core.ready else 503,
            media_type=JSON,
        )

    @router.get("/v2/models/stats")
    async def all_stats() -> Response:
        pairs = [(m.config.name, m.config.version) for m in core.models.values()]
        return Response(orjson.dumps(core.stats.document(pairs)), media_type=JSON)

    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):

        @router.get(prefix)
        async def model_metadata(model: str, version: str | None = None) -> Response:
            return Response(core.model(model, version).metadata, media_type=JSON)

        @router.get(prefix + "/ready")
        async def model_ready(model: str, version: str | None = None) -> Response:
            loaded = core.model(model, version)
            ok = core.ready and not loaded.batcher.closed
            return Response(
                model_ready_body(loaded.config.name, ok),
                status_code=200 if ok else 503,
                media_type=JSON,
            )

        @router.get(prefix + "/config")
        async def config(model: str, version: str | None = None) -> Response:
            return Response(
                orjson.dumps(model_config(core.model(model, version).config)), media_type=JSON
            )

        @router.get(prefix + "/stats")
        async def stats(model: str, version: str | None = None) -> Response:
            cfg = core.model(model, version).config
            return Response(
                orjson.dumps(core.stats.document([(cfg.name, cfg.version)])), media_type=JSON
            )

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(core.metrics.render(), media_type=core.metrics.content_type)

    return router


def repository_router(core: ModelServer) -> APIRouter:
    """The model repository extension. A replica listens on loopback behind the gateway,
    which guards these with the admin key."""
    router = APIRouter()

    @router.post("/v2/repository/index")
    async def index() -> Response:
        return Response(orjson.dumps(core.repository_index()), media_type=JSON)

    @router.post("/v2/repository/models/{model}/load")
    async def load(model: str, request: Request) -> Response:
        repository_parameters(await _control_body(request), "load")
        try:
            await asyncio.to_thread(core.load, model)
        except ArtifactError as exc:
            raise ModelServerError(
                str(exc).splitlines()[0], 404 if "not found" in str(exc) else 400
            ) from None
        return Response(b"", media_type=JSON)

    @router.post("/v2/repository/models/{model}/unload")
    async def unload(model: str, request: Request) -> Response:
        repository_parameters(await _control_body(request), "unload")  # (was not read)
        await asyncio.to_thread(core.unload, model)
        return Response(b"", media_type=JSON)

    return router


async def _control_body(request: Request) -> bytes:
    """A repository call's body, read within 64 KiB and 30 s (it was read whole at any size and
    pace)."""
    limit = 64 << 10
    return await read_body(
        request.receive, request.headers.get("content-length"), limit, None, 30.0
    )


class InferEndpoint:
    """``POST /v2/models/{m}[/versions/{v}]/infer`` at the ASGI level; the rest goes to FastAPI."""

    def __init__(
        self,
        app,
        *,
        core: ModelServer,
        limit_bytes: int,
        budget: BodyBudget,
        body_timeout_s: float | None,
    ):
        self.app = app
        self.core = core
        self.limit_bytes = limit_bytes
        self.budget = budget
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        target = infer_target(scope)
        if target is None:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await _send(
                send,
                405,
                error_body(f"method {scope['method']} is not allowed on an infer URL; use POST"),
                [(b"allow", b"POST")],
            )
        status, body, headers = await self._infer(scope, receive, *target)
        if status is not None:
            await _send(send, status, body, headers)

    async def _infer(self, scope, receive, name: str, version: str | None):
        started = time.perf_counter_ns()
        core, metrics = self.core, self.core.metrics
        try:
            model = core.model(name, version)
        except ModelServerError as exc:
            return exc.status, error_body(exc.message), []
        if core.draining:
            metrics.request_done(name, 503)
            return 503, error_body("server is draining; retry on another replica"), []
        content_length = header_length = encoding = accept = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
            elif key == _HEADER_LENGTH_KEY:
                header_length = value
            elif key == b"content-encoding":
                encoding = value.decode("latin-1")
            elif key == b"accept-encoding":
                accept = value.decode("latin-1")
        core.in_flight += 1
        lease = self.budget.lease()
        try:
            body = await read_body(
                receive, content_length, self.limit_bytes, lease, self.body_timeout_s
            )
            if encoding is not None:
                body = decode_content(body, encoding, self.limit_bytes, lease)
            answer = await core.infer(model, body, parse_header_length(header_length))
        except (CodecError, ModelServerError) as exc:
            metrics.request_done(name, exc.status)
            model.stats.request_done(False, time.perf_counter_ns() - started)
            extra = [(k.encode(), v.encode()) for k, v in getattr(exc, "headers", {}).items()]
            return exc.status, error_body(exc.message), extra
        except ClientGone:  # nobody is left to answer
            return None, b"", []
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            log.exception("model %s: infer failed", name)
            metrics.request_done(name, 500)
            return 500, error_body(f"internal error: {type(exc).__name__}: {exc}"), []
        finally:
            lease.release()
            core.in_flight -= 1
        elapsed_ns = time.perf_counter_ns() - started
        metrics.request_done(name, 200, elapsed_ns / 1e9)
        model.stats.request_done(True, elapsed_ns, answer.rows)
        headers = answer.batch.headers()  # the gateway learns its batch-time curve from these
        if answer.header_length is not None:
            headers.append((b"content-type", b"application/octet-stream"))
            headers.append((_HEADER_LENGTH_KEY, str(answer.header_length).encode()))
        coded: dict[str, str] = {}  # (as the gateway answers: vmpool.codec_encoding)
        body = await encode_content(answer.body, coded, accept)
        return 200, body, headers + [(k.encode(), v.encode()) for k, v in coded.items()]


async def _send(send, status: int, body: bytes, headers: list) -> None:
    if not any(k == b"content-type" for k, _ in headers):
        headers = [(b"content-type", JSON.encode()), *headers]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
