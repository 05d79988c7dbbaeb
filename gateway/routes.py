"""The Open Inference Protocol's REST routes other than infer: health, metadata, config,
statistics; and /metrics. Each answers JSON with a JSON content type."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from vmpool.wire import (
    LIVE_BODY,
    NOT_READY_BODY,
    READY_BODY,
    model_config,
    model_metadata,
    model_ready_body,
    server_metadata,
)

from .model_version import find_model
from .state import GatewayState

VERSION = "0.1.0"
JSON = "application/json"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_JSON_BODY = {"content": {JSON: {"schema": {"type": "object"}}}}
_ERROR = {"description": "Error", "content": {JSON: {"schema": ERROR_SCHEMA}}}
NOT_FOUND = {404: {**_ERROR, "description": "Unknown model or version"}}
NOT_READY = {503: {**_ERROR, "description": "Not ready"}}


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def _raw(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def protocol_router(state: GatewayState) -> APIRouter:
    router = APIRouter(tags=["Open Inference Protocol"])
    document = orjson.dumps(server_metadata("tidegate", VERSION))

    @router.get("/v2", responses={200: _JSON_BODY})
    async def server_metadata_endpoint():
        return _raw(document)

    @router.get(
        "/v2/health/live",
        responses={
            200: {
                "content": {
                    JSON: {
                        "schema": {"type": "object", "properties": {"live": {"type": "boolean"}}}
                    }
                }
            }
        },
    )
    async def live():
        return _raw(LIVE_BODY)

    @router.get(
        "/v2/health/ready",
        responses={
            200: {
                "content": {
                    JSON: {
                        "schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                    }
                }
            },
            503: {"description": "Not ready", "content": {JSON: {}}},
        },
    )
    async def ready():
        ok = state.ready()
        return _raw(READY_BODY if ok else NOT_READY_BODY, 200 if ok else 503)

    @router.get("/v2/models/stats", responses={200: _JSON_BODY, **NOT_READY})
    async def all_stats():
        models = state.require_dispatcher().models.values()
        return json_response(state.stats.document([(m.name, m.version) for m in models]))

    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        _model_routes(router, state, prefix)
    for path, extension in UNSUPPORTED.items():
        router.add_api_route(
            path, _unsupported(extension), methods=["GET", "POST"], include_in_schema=False
        )
    return router


# Triton's extensions this server does not serve, by the URLs tritonclient calls: a 501 naming
# the extension (they were a bare 404 "Not Found", which read as a wrong URL or model). gRPC
# answers their methods UNIMPLEMENTED alike (gateway/grpc/server.py).
UNSUPPORTED = {
    "/v2/systemsharedmemory{rest:path}": "system shared memory",
    "/v2/cudasharedmemory{rest:path}": "CUDA shared memory",
    "/v2/trace/setting": "trace",
    "/v2/models/{model}/trace/setting": "trace",
    "/v2/models/{model}/versions/{version}/trace/setting": "trace",
    "/v2/logging": "logging",
    "/v2/models/{model}/generate{rest:path}": "generate",
    "/v2/models/{model}/versions/{version}/generate{rest:path}": "generate",
}


def unsupported_message(extension: str) -> str:
    return (
        f"the {extension} extension is not supported by this server "
        f"(GET /v2 lists the extensions it serves)"
    )


def _unsupported(extension: str):
    body = orjson.dumps({"error": unsupported_message(extension)})

    async def unsupported():
        return _raw(body, 501)

    return unsupported


def _model_routes(router: APIRouter, state: GatewayState, prefix: str) -> None:
    errors = {**NOT_FOUND, **NOT_READY}

    @router.get(prefix, responses={200: _JSON_BODY, **errors})
    async def metadata(model: str, version: str | None = None):
        return json_response(model_metadata(find_model(state.require_dispatcher(), model, version)))

    @router.get(prefix + "/ready", responses={200: _JSON_BODY, **errors})
    async def model_ready(model: str, version: str | None = None):
        cfg = find_model(state.require_dispatcher(), model, version)
        ok = state.ready()
        return _raw(model_ready_body(cfg.name, ok), 200 if ok else 503)

    @router.get(prefix + "/config", responses={200: _JSON_BODY, **errors})
    async def config(model: str, version: str | None = None):
        """The model's configuration in Triton's shape (``tritonclient``'s get_model_config)."""
        return json_response(model_config(find_model(state.require_dispatcher(), model, version)))

    @router.get(prefix + "/stats", responses={200: _JSON_BODY, **errors})
    async def stats(model: str, version: str | None = None):
        """Inference statistics at the gateway in Triton's shape (get_inference_statistics)."""
        cfg = find_model(state.require_dispatcher(), model, version)
        return json_response(state.stats.document([(cfg.name, cfg.version)]))


def metrics_router(state: GatewayState) -> APIRouter:
    router = APIRouter(tags=["Operations"])

    @router.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
    async def prometheus():
        metrics, pool = state.metrics, state.pool
        d = state.dispatcher
        if d is not None and d.engine is not None:  # replicas by state, observed latencies
            d.engine.refresh_metrics()
        elif pool is not None:
            metrics.replicas.labels("ready").set(len(pool.ready()))
            metrics.replicas.labels("booting").set(len(pool.booting()))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
