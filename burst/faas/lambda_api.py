"""AWS Lambda's REST API (Invoke, a CreateFunction/GetFunction/DeleteFunction subset,
PutFunctionConcurrency) served by the local function runtime; the routes only translate HTTP to
calls on ``LocalFunctionRuntime``, so botocore-based clients work against it unchanged."""

from __future__ import annotations

import base64
import uuid
from dataclasses import asdict

import orjson
from aiohttp import web

from burst.faas.local_runtime import (_API, LOG_TAIL_BYTES, FunctionSpec, LocalFunctionRuntime,
                                      RuntimeApiError)

def _error_response(exc: RuntimeApiError) -> web.Response:
    headers = {"x-amzn-ErrorType": exc.error_type, "x-amzn-RequestId": str(uuid.uuid4())}
    if exc.status == 429:
        headers["Retry-After"] = "1"
    return web.Response(status=exc.status, body=orjson.dumps(exc.body()), headers=headers,
                        content_type="application/json")


def _json(data, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def add_routes(app: web.Application, runtime: LocalFunctionRuntime) -> None:
    """Lambda's REST API on ``app``, each route a thin translation to ``runtime``."""
    @web.middleware
    async def api_errors(request, handler):
        try:
            return await handler(request)
        except RuntimeApiError as exc:
            return _error_response(exc)
        except ValueError as exc:
            return _error_response(RuntimeApiError(400, "InvalidParameterValueException",
                                                   str(exc)))

    app.middlewares.append(api_errors)

    async def invoke(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        runtime._state(name)  # 404 before reading a body
        if (request.content_length or 0) > runtime.max_payload_bytes:
            raise RuntimeApiError(413, "RequestEntityTooLargeException",
                                  f"Request must be smaller than {runtime.max_payload_bytes} "
                                  f"bytes for the InvokeFunction operation")
        try:
            payload = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RuntimeApiError(413, "RequestEntityTooLargeException",
                                  f"Request must be smaller than {runtime.max_payload_bytes} "
                                  f"bytes for the InvokeFunction operation") from None
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "DryRun":
            return web.Response(status=204)
        if kind == "Event":
            runtime._admit_event(name, payload)
            return web.Response(status=202)
        if kind != "RequestResponse":
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  f"unsupported X-Amz-Invocation-Type {kind!r}")
        result = await runtime.invoke(name, payload)
        headers = {"X-Amz-Executed-Version": "$LATEST",
                   "x-amzn-RequestId": result.billing.request_id}
        if result.error_type is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if request.headers.get("X-Amz-Log-Type") == "Tail":
            tail = result.log_tail.encode()[-LOG_TAIL_BYTES:]
            headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
        return web.Response(status=200, body=result.payload, headers=headers,
                            content_type="application/json")

    async def create(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            spec = FunctionSpec(
                name=body["FunctionName"], handler=body["Handler"],
                memory_mb=int(body.get("MemorySize", 128)),
                timeout_s=float(body.get("Timeout", 3)),
                environment=dict((body.get("Environment") or {}).get("Variables") or {}))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  f"bad CreateFunction request: {exc!r}") from None
        if spec.name in runtime._functions:
            raise RuntimeApiError(409, "ResourceConflictException",
                                  f"Function already exist: {spec.name}")
        runtime.add_function(spec)
        return _json(spec.configuration(), status=201)

    async def get_function(request: web.Request) -> web.Response:
        spec = runtime.get_function(request.match_info["name"])
        data = {"Configuration": spec.configuration(), "Code": {"RepositoryType": "Local"}}
        if spec.reserved_concurrency is not None:
            data["Concurrency"] = {"ReservedConcurrentExecutions": spec.reserved_concurrency}
        return _json(data)

    async def list_functions(request: web.Request) -> web.Response:
        return _json({"Functions": [s.configuration() for s in runtime.functions()]})

    async def delete(request: web.Request) -> web.Response:
        await runtime.remove_function(request.match_info["name"])
        return web.Response(status=204)

    async def put_concurrency(request: web.Request) -> web.Response:
        try:
            reserved = int(orjson.loads(await request.read())["ReservedConcurrentExecutions"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  f"bad PutFunctionConcurrency request: {exc!r}") from None
        runtime.set_reserved_concurrency(request.match_info["name"], reserved)
        return _json({"ReservedConcurrentExecutions": reserved})

    async def prewarm(request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", "1"))
        except ValueError:
            raise RuntimeApiError(400, "InvalidParameterValueException",
                                  "count must be an integer") from None
        started = await runtime.prewarm(request.match_info["name"], count)
        return _json({"started": started})

    async def billing(request: web.Request) -> web.Response:
        return _json([asdict(r) for r in runtime.billing(request.query.get("function"))])

    async def health(request: web.Request) -> web.Response:
        return _json({"status": "ok", "functions": len(runtime._functions),
                      "in_flight": runtime._in_flight})

    app.router.add_post(f"{_API}/functions/{{name}}/invocations", invoke)
    app.router.add_post(f"{_API}/functions/{{name}}/prewarm", prewarm)
    app.router.add_post(f"{_API}/functions", create)
    app.router.add_get(f"{_API}/functions", list_functions)
    app.router.add_get(f"{_API}/functions/", list_functions)
    app.router.add_get(f"{_API}/functions/{{name}}", get_function)
    app.router.add_delete(f"{_API}/functions/{{name}}", delete)
    app.router.add_put("/2017-10-31/functions/{name}/concurrency", put_concurrency)
    app.router.add_get(f"{_API}/billing", billing)
    app.router.add_get("/health", health)
