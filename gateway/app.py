"""``create_app(settings)``: the gateway's FastAPI app, built from typed settings, no globals.

Wiring only: the live objects are in ``GatewayState`` (``app.state.gateway``), start-up and
shutdown in ``lifespan.py``, REST routes in ``routes.py``, the hot infer endpoint in
``infer_endpoint.py``. To add routes: write ``my_router(state) -> APIRouter`` and include it below.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from policies.costs import PriceTable
from vmpool.body import BodyBudget

from .access_log import AccessLog
from .admin import admin_router
from .errors import TidegateError
from .fast_lane import FastLane
from .asyncq.routes import requests_router
from .infer_endpoint import GatewayApp, InferEndpoint
from .infer_schema import EXPOSED_HEADERS, document_infer
from .lifespan import load_models, make_lifespan  # noqa: F401  (load_models: public helper)
from .metrics import GatewayMetrics
from .middleware import RequestIdMiddleware
from .reports import reports_router
from .repository import repository_router
from .routes import VERSION, json_response, metrics_router, protocol_router
from .settings import Settings
from .state import GatewayState
from .tenants import TenantRegistry, make_limits

log = logging.getLogger("tidegate.gateway")


def create_app(
    settings: Settings, *, provisioner=None, burst=None, prices: PriceTable | None = None
) -> FastAPI:
    """Build the gateway. ``provisioner`` and ``burst`` replace the embedded defaults (tests)."""
    metrics = GatewayMetrics()
    limits = make_limits(
        settings.redis_url, registry=metrics.registry, fail_open=settings.fail_open
    )
    state = GatewayState(
        settings=settings,
        metrics=metrics,
        tenants=TenantRegistry(settings.tenants, limits=limits),
        body_budget=BodyBudget(int(settings.max_inflight_body_mb * 1024 * 1024)),
    )
    app = GatewayApp(
        title="Tidegate",
        version=VERSION,
        docs_url="/docs",
        redoc_url=None,
        redirect_slashes=False,  # (a 307 to the Host header's site, for a URL ending in "/")
        lifespan=make_lifespan(state, provisioner=provisioner, burst=burst, prices=prices),
    )
    app.state.settings = settings
    app.state.metrics = state.metrics
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(protocol_router(state))
    app.include_router(metrics_router(state))
    app.include_router(admin_router(state))
    app.include_router(requests_router(state))
    app.include_router(repository_router(state))
    app.include_router(reports_router(state))
    document_infer(app)
    app.add_middleware(RequestIdMiddleware)
    endpoint = InferEndpoint(
        app.rest, state=state, limit_bytes=int(settings.max_body_mb * 1024 * 1024)
    )
    app.front = endpoint
    if settings.cors_origins:  # outermost, so preflights of infer URLs are answered too
        app.front = CORSMiddleware(
            app.front,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.front = access_log = AccessLog(app.front, state=state, fmt=settings.access_log)
    # plain infer POSTs answered by the HTTP protocol itself, same endpoint and access log
    app.fast_lane = FastLane(endpoint, access_log, cors=bool(settings.cors_origins))
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"error": ...}`` with its status (and headers, for ours)."""

    @app.exception_handler(TidegateError)
    async def _tidegate_error(request: Request, exc: TidegateError):
        return json_response({"error": exc.message}, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return json_response(
            {"error": str(exc.detail)}, exc.status_code, getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("PUT", "POST") and kind and "json" not in kind:
            # curl -d sends a form: the body was never read as JSON
            message = f"the body must be JSON sent as Content-Type: application/json, not {kind}"
        else:
            message = "; ".join(_describe(e) for e in exc.errors())
        return json_response({"error": "invalid request: " + message}, 400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)


def _describe(error) -> str:
    """One validation error with the field it is about ("autoscaling.knative.max_replicas:
    Input should be ...": the bare message did not say which field)."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg"))
    if error.get("type") == "union_tag_not_found":  # a table sent without its "policy"
        message = f"needs its {error['ctx']['discriminator']} (send the whole table)"
    return f"{where}: {message}" if where else message
