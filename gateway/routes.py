"""The Open Inference Protocol's REST routes other than infer (health, metadata) and /metrics."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from . import protocol
from .state import GatewayState

VERSION = "0.1.0"


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json",
                    headers=headers)


def protocol_router(state: GatewayState) -> APIRouter:
    router = APIRouter()

    @router.get("/v2")
    async def server_metadata():
        return json_response({"name": "tidegate", "version": VERSION,
                              "extensions": ["binary_tensor_data"]})

    @router.get("/v2/health/live")
    async def live():
        return Response(status_code=200)

    @router.get("/v2/health/ready")
    async def ready():
        return Response(status_code=200 if state.ready() else 503)

    @router.get("/v2/models/{model}")
    @router.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str | None = None):
        return json_response(protocol.model_metadata(
            state.require_dispatcher().model(model, version)))

    @router.get("/v2/models/{model}/ready")
    @router.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str | None = None):
        state.require_dispatcher().model(model, version)
        return Response(status_code=200 if state.ready() else 503)

    return router


def metrics_router(state: GatewayState) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics")
    async def prometheus():
        metrics, pool = state.metrics, state.pool
        if pool is not None:
            metrics.replicas.labels("ready").set(len(pool.ready()))
            metrics.replicas.labels("booting").set(len(pool.booting()))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
