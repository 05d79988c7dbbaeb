"""The model repository extension: ``POST /v2/repository/index``, ``.../models/{m}/load``,
``.../models/{m}/unload`` (what ``tritonclient``'s load_model/unload_model call).

Where tenants exist, or an operator set ``admin_api_key``, these need the admin key (as Bearer
or x-api-key): a tenant must not take a model away from another. A gateway with no tenants and
no admin key is open, and so are these. Loading reads the model's config from the repository and asks every ready replica to
load the program; unloading stops routing to the model first, then tells the replicas. The gRPC service's
RepositoryIndex, RepositoryModelLoad and RepositoryModelUnload call the same functions.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from vmpool.artifact import ArtifactError, list_models, load_artifact
from vmpool.wire import repository_entry

from .lifespan import coalesce_model
from .errors import BadRequest, Forbidden, NotFound, Unauthorized, Unavailable
from .routes import _ERROR, NOT_FOUND, NOT_READY, json_response
from .state import GatewayState

log = logging.getLogger("tidegate.gateway")
_GUARDED = {401: {"description": "Missing admin key"}, 403: {"description": "Not the admin key"}}
# an invalid model name, a model there but broken; replicas that cannot be told
_CHANGE = {**_GUARDED, **NOT_FOUND, 400: {**_ERROR, "description": "Bad model"}, **NOT_READY}


def require_admin(state: GatewayState, headers: Mapping[str, str]) -> None:
    """401/403 unless the caller holds the admin key (``headers``: the HTTP headers or gRPC
    metadata); open only on a gateway without tenants whose operator set no admin key (a set
    key guards these as it guards ``/admin``)."""
    expected = state.settings.admin_api_key
    if expected:
        auth = headers.get("authorization") or ""
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        given = given or headers.get("x-api-key")
        if not given:
            raise Unauthorized(
                "the model repository needs the admin key (Authorization: Bearer <key> or "
                "x-api-key)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Forbidden("the model repository needs the admin key: wrong key")
    elif not state.tenants.open:
        raise Forbidden("the model repository needs the admin key; set admin_api_key")


async def index_rows(state: GatewayState) -> list[dict]:
    """Every model in the repository, READY if the gateway serves it."""
    models = state.require_dispatcher().models
    rows = []
    for name in await asyncio.to_thread(list_models, state.settings.repo_path):
        cfg = models.get(name)
        rows.append(
            repository_entry(name, cfg.version, "READY")
            if cfg is not None
            else repository_entry(name, None, "UNAVAILABLE", "not loaded")
        )
    return rows


async def load_model(state: GatewayState, model: str) -> None:
    """Read ``model``'s config from the repository, have every ready replica load it, serve it."""
    dispatcher = state.require_dispatcher()
    repo = state.settings.repo_path
    try:
        artifact = await asyncio.to_thread(load_artifact, repo, model)
    except ArtifactError as exc:
        # (the repository's place on disk is the operator's, not the caller's, to know)
        message = str(exc).splitlines()[0].replace(f"repository {repo}", "the model repository")
        message = message.replace(str(repo), "the model repository")
        if "not found" in message:
            raise NotFound(message) from None
        raise BadRequest(message) from None  # there, but broken (its config): as the replicas
    await _tell_replicas(state, model, "load")
    if state.pool is not None:
        coalesce_model(state.pool, artifact.config, state.settings.vm)
    dispatcher.models[artifact.config.name] = artifact.config


async def unload_model(state: GatewayState, model: str) -> None:
    """Stop routing to ``model``, then tell the replicas to drop it."""
    dispatcher = state.require_dispatcher()
    if dispatcher.models.pop(model, None) is None:
        raise NotFound(f"model {model!r} is not loaded")
    await _tell_replicas(state, model, "unload")


def refuse_load_overrides(names) -> None:
    """400 for Triton's load parameters that replace the model (``config``, ``file:...``):
    a model loads from the repository as it is there; ignoring them would answer with another
    model than the caller asked for. (``unload_dependents`` has nothing to act on: taken.)"""
    overrides = sorted(n for n in names if n == "config" or n.startswith("file:"))
    if overrides:
        raise BadRequest(
            f"loading with {', '.join(overrides)} is not supported: put the model in the "
            f"repository (tidegate export) and load it by name"
        )


async def _ready_only(request: Request) -> bool:
    """The index request's ``ready`` flag (an empty body: false)."""
    body = await _body_object(request)
    ready = body.get("ready", False)
    if not isinstance(ready, bool):
        raise BadRequest("'ready' must be true or false")
    return ready


async def _body_object(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


async def _parameters(request: Request) -> dict:
    params = (await _body_object(request)).get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    return params


def check_unload_parameters(params: Mapping[str, object]) -> None:
    """400 for an unload whose ``unload_dependents`` is not a boolean (as Triton answers), before
    anything is unloaded: a malformed request must leave the model served."""
    if "unload_dependents" in params and not isinstance(params["unload_dependents"], bool):
        raise BadRequest("'unload_dependents' must be true or false")


def repository_router(state: GatewayState) -> APIRouter:
    router = APIRouter(tags=["Model repository"])

    @router.post("/v2/repository/index", responses=_GUARDED)
    async def index(request: Request):
        """Every model in the repository, READY if the gateway serves it."""
        require_admin(state, request.headers)
        rows = await index_rows(state)
        if await _ready_only(request):  # {"ready": true}: the served ones, as over gRPC
            rows = [r for r in rows if r["state"] == "READY"]
        return json_response(rows)

    @router.post("/v2/repository/models/{model}/load", responses=_CHANGE)
    async def load(model: str, request: Request):
        require_admin(state, request.headers)
        refuse_load_overrides(list(await _parameters(request)))
        await load_model(state, model)
        return Response(b"{}", media_type="application/json")

    @router.post("/v2/repository/models/{model}/unload", responses=_CHANGE)
    async def unload(model: str, request: Request):
        require_admin(state, request.headers)
        check_unload_parameters(await _parameters(request))
        await unload_model(state, model)
        return Response(b"{}", media_type="application/json")

    return router


async def _tell_replicas(state: GatewayState, model: str, action: str) -> None:
    """Tell the replicas in rotation (their failures fail a load), and those out of it (one that
    cannot be told is kept out by the pool until it has been: ``ReplicaPool.missed``)."""
    pool = state.pool
    if pool is None:
        return
    replicas, others = pool.ready(), pool.out_of_rotation()
    results = await asyncio.gather(
        *(pool.client.repository(r.url, model, action) for r in replicas + others),
        return_exceptions=True,
    )
    for r, exc in zip(others, results[len(replicas) :], strict=True):
        if exc is not None and not 400 <= getattr(exc, "status", 500) < 500:  # unreachable
            pool.missed(r.id, model, action)
    results = results[: len(replicas)]
    errors = [exc for exc in results if exc is not None]
    repo = str(state.settings.repo_path)
    failed = [
        f"{r.url}: {exc}".replace(repo, "the model repository")
        for r, exc in zip(replicas, results, strict=True)
        if exc is not None
    ]
    if not failed:
        return
    if action == "unload":
        log.warning("replicas could not unload %s: %s", model, "; ".join(failed))
        return
    message = f"replicas could not {action} {model!r}: {'; '.join(failed)}"
    if all(400 <= getattr(exc, "status", 0) < 500 for exc in errors):
        # the model itself (damaged, a bad config): no retry loads it, unlike a replica down
        raise BadRequest(message)
    raise Unavailable(message)
