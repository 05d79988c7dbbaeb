"""``/admin``: the routing policy and autoscaler at run time, and each path's state.

Guarded by ``admin_api_key`` (``Authorization: Bearer`` or ``x-api-key``). Without a key in the
config, only a loopback caller of a gateway with no tenants may use it (a laptop, not a fleet).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from .control import PolicyChoice, PolicyEngine
from .errors import BadRequest, Forbidden, Unauthorized, Unavailable
from .policy_settings import AutoscalingSettings, RoutingPolicyName, configured_routing_params
from .routes import ERROR_SCHEMA, json_response
from .state import GatewayState


class PolicyUpdate(BaseModel):
    """A change of policy: any of the three parts; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    routing_policy: RoutingPolicyName | None = Field(None, description="The new routing policy.")
    routing_params: dict | None = Field(
        None, description="Its parameters (e.g. threshold's spill_outstanding_per_replica)."
    )
    autoscaling: AutoscalingSettings | None = Field(
        None, description="The whole [autoscaling] table: policy and its parameters."
    )


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def presented_key(request: Request) -> str | None:
    """The key a caller presents: ``Authorization: Bearer <key>``, else ``x-api-key``."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def check_admin_key(expected: str, request: Request, what: str) -> None:
    """401 without a key, 403 with another; ``what`` names the API in the message."""
    given = presented_key(request)
    if not given:
        raise Unauthorized(
            f"{what} needs the admin key (Authorization: Bearer <key> or x-api-key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden(f"{what} needs the admin key: wrong key")


def authorize(state: GatewayState, request: Request) -> None:
    key = state.settings.admin_api_key
    if key:
        check_admin_key(key, request, "the admin API")
        return
    if not state.settings.tenants and _is_loopback(request.client.host if request.client else None):
        return
    raise Forbidden(
        "the admin API is off: set admin_api_key in the config (without one it "
        "answers only loopback callers of a gateway with no tenants)"
    )


def _engine(state: GatewayState) -> PolicyEngine:
    engine = state.require_dispatcher().engine
    if engine is None:
        raise Unavailable("the policy engine is not running", headers={"Retry-After": "1"})
    return engine


def _describe(engine: PolicyEngine) -> dict:
    c = engine.choice
    return {
        "routing_policy": c.routing_policy,
        "routing_params": c.routing_params,
        "autoscaling": c.autoscaling.model_dump(),
    }


_ERROR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}


def admin_router(state: GatewayState) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["Admin"])

    @router.get("/policy")
    async def get_policy(request: Request):
        authorize(state, request)
        return json_response(_describe(_engine(state)))

    @router.put(
        "/policy",
        responses={  # what authorize and set_policy raise (schema fuzzing)
            400: {**_ERROR, "description": "Parameters the policy does not take, or out of range"},
            401: {**_ERROR, "description": "Missing admin key"},
            403: {**_ERROR, "description": "Not the admin key"},
        },
    )
    async def put_policy(update: PolicyUpdate, request: Request):
        authorize(state, request)
        engine = _engine(state)
        old = engine.choice
        name = update.routing_policy or old.routing_policy
        if update.routing_params is not None:  # over the configured ones, as at start
            spill = state.settings.spill_outstanding_per_replica
            params = {**configured_routing_params(name, spill), **update.routing_params}
        elif name == old.routing_policy:
            params = old.routing_params
        else:
            params = configured_routing_params(name, state.settings.spill_outstanding_per_replica)
        choice = PolicyChoice(name, params, update.autoscaling or old.autoscaling)
        try:
            engine.set_policy(choice)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return json_response(_describe(engine))

    @router.get("/paths")
    async def paths(request: Request):
        authorize(state, request)
        return json_response(_engine(state).paths())

    return router
