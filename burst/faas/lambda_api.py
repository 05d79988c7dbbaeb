"""AWS Lambda's REST API (Invoke, a CreateFunction/GetFunction/DeleteFunction subset,
PutFunctionConcurrency) served for a ``LocalFunctionRuntime`` on aiohttp. The routes only
translate HTTP to the runtime's public methods, so botocore-based clients work unchanged."""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from dataclasses import asdict

import orjson
from aiohttp import web

from burst.faas.functions import FunctionExists, FunctionSpec
from burst.faas.lambda_wire import API_PREFIX, LOG_TAIL_BYTES, RuntimeApiError


def _error_response(exc: RuntimeApiError) -> web.Response:
    headers = {"x-amzn-ErrorType": exc.error_type, "x-amzn-RequestId": str(uuid.uuid4())}
    if exc.status == 429:
        headers["Retry-After"] = "1"
    return web.Response(
        status=exc.status,
        body=orjson.dumps(exc.body()),
        headers=headers,
        content_type="application/json",
    )


def _json(data, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _too_large(limit: int) -> RuntimeApiError:
    return RuntimeApiError(
        413,
        "RequestEntityTooLargeException",
        f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
    )


# the runtime a route translates to, set on the app by ``add_routes``
RUNTIME = web.AppKey("runtime", object)


@web.middleware
async def _api_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RuntimeApiError as exc:
        return _error_response(exc)
    except ValueError as exc:
        return _error_response(RuntimeApiError(400, "InvalidParameterValueException", str(exc)))


async def _invoke(request: web.Request) -> web.Response:
    runtime, name = request.app[RUNTIME], request.match_info["name"]
    runtime.get_function(name)  # 404 before reading a body
    if (request.content_length or 0) > runtime.max_payload_bytes:
        raise _too_large(runtime.max_payload_bytes)
    try:
        payload = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(runtime.max_payload_bytes) from None
    kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    if kind == "DryRun":
        return web.Response(status=204)
    if kind == "Event":
        runtime.invoke_event(name, payload)
        return web.Response(status=202)
    if kind != "RequestResponse":
        raise RuntimeApiError(
            400, "InvalidParameterValueException", f"unsupported X-Amz-Invocation-Type {kind!r}"
        )
    result = await runtime.invoke(name, payload)
    headers = {
        "X-Amz-Executed-Version": "$LATEST",
        "x-amzn-RequestId": result.billing.request_id,
    }
    if result.error_type is not None:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if request.headers.get("X-Amz-Log-Type") == "Tail":
        tail = result.log_tail.encode()[-LOG_TAIL_BYTES:]
        headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
    return web.Response(
        status=200, body=result.payload, headers=headers, content_type="application/json"
    )


async def _create(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        spec = FunctionSpec(
            name=body["FunctionName"],
            handler=body["Handler"],
            memory_mb=int(body.get("MemorySize", 128)),
            timeout_s=float(body.get("Timeout", 3)),
            environment=dict((body.get("Environment") or {}).get("Variables") or {}),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RuntimeApiError(
            400, "InvalidParameterValueException", f"bad CreateFunction request: {exc!r}"
        ) from None
    try:
        request.app[RUNTIME].add_function(spec)
    except FunctionExists:
        raise RuntimeApiError(
            409, "ResourceConflictException", f"Function already exist: {spec.name}"
        ) from None
    return _json(spec.configuration(), status=201)


async def _get_function(request: web.Request) -> web.Response:
    spec = request.app[RUNTIME].get_function(request.match_info["name"])
    data = {"Configuration": spec.configuration(), "Code": {"RepositoryType": "Local"}}
    if spec.reserved_concurrency is not None:
        data["Concurrency"] = {"ReservedConcurrentExecutions": spec.reserved_concurrency}
    return _json(data)


async def _list_functions(request: web.Request) -> web.Response:
    return _json({"Functions": [s.configuration() for s in request.app[RUNTIME].functions()]})


async def _delete(request: web.Request) -> web.Response:
    await request.app[RUNTIME].remove_function(request.match_info["name"])
    return web.Response(status=204)


async def _put_concurrency(request: web.Request) -> web.Response:
    try:
        reserved = int(orjson.loads(await request.read())["ReservedConcurrentExecutions"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RuntimeApiError(
            400,
            "InvalidParameterValueException",
            f"bad PutFunctionConcurrency request: {exc!r}",
        ) from None
    request.app[RUNTIME].set_reserved_concurrency(request.match_info["name"], reserved)
    return _json({"ReservedConcurrentExecutions": reserved})


async def _prewarm(request: web.Request) -> web.Response:
    try:
        count = int(request.query.get("count", "1"))
    except ValueError:
        raise RuntimeApiError(
            400, "InvalidParameterValueException", "count must be an integer"
        ) from None
    started = await request.app[RUNTIME].prewarm(request.match_info["name"], count)
    return _json({"started": started})


async def _billing(request: web.Request) -> web.Response:
    records = request.app[RUNTIME].billing(request.query.get("function"))
    return _json([asdict(r) for r in records])


async def _health(request: web.Request) -> web.Response:
    return _json(request.app[RUNTIME].health())


def add_routes(app: web.Application, runtime) -> None:
    """Lambda's REST API on ``app``, each route a thin translation to ``runtime``."""
    app[RUNTIME] = runtime
    app.middlewares.append(_api_errors)
    app.router.add_post(f"{API_PREFIX}/functions/{{name}}/invocations", _invoke)
    app.router.add_post(f"{API_PREFIX}/functions/{{name}}/prewarm", _prewarm)
    app.router.add_post(f"{API_PREFIX}/functions", _create)
    app.router.add_get(f"{API_PREFIX}/functions", _list_functions)
    app.router.add_get(f"{API_PREFIX}/functions/", _list_functions)
    app.router.add_get(f"{API_PREFIX}/functions/{{name}}", _get_function)
    app.router.add_delete(f"{API_PREFIX}/functions/{{name}}", _delete)
    app.router.add_put("/2017-10-31/functions/{name}/concurrency", _put_concurrency)
    app.router.add_get(f"{API_PREFIX}/billing", _billing)
    app.router.add_get("/health", _health)


class LambdaApiServer:
    """The HTTP server in front of a runtime."""

    def __init__(self, runtime, host: str, port: int):
        self.runtime, self.host, self.port = runtime, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=self.runtime.max_payload_bytes + (1 << 20))
        add_routes(app, self.runtime)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ThreadHandle:
    """A runtime running on its own event loop in a daemon thread (tests, embedding)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="function-runtime", daemon=True
        )

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runtime.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def start_in_thread(runtime) -> ThreadHandle:
    handle = ThreadHandle(runtime)
    handle.thread.start()
    asyncio.run_coroutine_threadsafe(runtime.start(), handle.loop).result(timeout=30)
    return handle
