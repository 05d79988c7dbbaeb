"""``POST /v2/models/{m}[/versions/{v}]/infer`` at the ASGI level, in front of FastAPI.

The hot path skips routing and dependency resolution (measured: a third of the gateway's Python
time per request went there); every other request goes on to the FastAPI app. Bodies are read
within the per-request limit, the process-wide budget of body bytes in flight and the body
timeout (``vmpool.body``).
"""

from __future__ import annotations

import itertools
import logging
import os
import time

from vmpool.body import read_body as read_raw_body
from vmpool.codec import CodecError
from vmpool.codec_encoding import encode_content
from vmpool.forward import wire_inputs
from vmpool.rest import INFER_PATH, FrontedApp, infer_target  # noqa: F401 - INFER_PATH: access_log

from . import protocol
from .deferred import later, run_after
from .call import CallContext
from .errors import BadRequest, TidegateError
from .model_version import find_model
from .state import GatewayState
from .tenants import repeated_key_header, repeated_message

log = logging.getLogger("tidegate.gateway")
NOTE_KEY = "tidegate.access"  # scope key of the access log's note (gateway/access_log.py)
_JSON = "application/json"
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


GatewayApp = FrontedApp  # FastAPI with the infer endpoint in front of its middleware stack


class RequestIds:
    """Unique request ids, cheaply: a random per-process prefix and a counter (uuid4 was 2 % of
    the gateway's CPU per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):010x}"


new_request_id = RequestIds()


class InferEndpoint:
    def __init__(self, app, *, state: GatewayState, limit_bytes: int):
        self.app = app
        self.state = state
        self.limit_bytes = limit_bytes
        self.body_timeout_s = state.settings.body_timeout_s

    async def __call__(self, scope, receive, send):
        target = infer_target(scope)
        if target is None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            repeated = repeated_key_header(k.decode("latin-1") for k, _ in scope["headers"])
            if repeated is not None:
                return await _refuse_repeated(scope, send, repeated, {})
            if scope["method"] in _BODY_METHODS:
                return await self._bounded(scope, receive, send)
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        note = scope.get(NOTE_KEY)
        if note is None:  # no access log in front
            note = {}
        if len(headers) != len(scope["headers"]):  # a header repeated: a key header twice?
            repeated = repeated_key_header(k.decode("latin-1") for k, _ in scope["headers"])
            if repeated is not None:
                return await _refuse_repeated(scope, send, repeated, note)
        after: list = []  # bookkeeping put off until the answer is sent (gateway/deferred.py)
        try:
            answer = await self.respond(
                scope["method"], scope["path"], target, headers, receive, note, after
            )
            if answer is None:
                return
            status, body, out_headers, lease = answer
            try:
                await protocol.send_response(send, status, body, out_headers)
            finally:
                if lease is not None:
                    lease.release()  # the body's bytes live until the answer is handed over
        finally:
            run_after(after)

    async def _bounded(self, scope, receive, send):
        """A body sent to another route (admin, repository, async requests): read here within
        the same bounds as an infer body (size, the budget, the timeout) before the app sees
        it. FastAPI read any body whole, at any pace, before a route checked its key."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        lease = self.state.body_budget.lease()
        try:
            try:
                body = await read_raw_body(
                    receive,
                    headers.get("content-length"),
                    self.limit_bytes,
                    lease,
                    self.body_timeout_s,
                )
            except CodecError as exc:
                request_id = protocol.header_safe_id(headers.get("x-request-id"))
                out = {"content-type": _JSON, "x-request-id": request_id or new_request_id()}
                body = protocol.error_body(exc.message)
                return await protocol.send_response(send, exc.status, body, {**out, **exc.headers})
            except protocol.ClientGone:  # nobody to answer: the send is dropped, but the
                # access log's line and count say 499, not their default 500
                return await protocol.send_response(send, 499, b"", {})
            await self.app(scope, _replay(bytes(body), receive), send)
        finally:
            lease.release()

    async def respond(
        self, method: str, path: str, target, headers: dict[str, str], receive, note, after=None
    ):
        """``(status, body, headers, lease)`` for one request to an infer URL, errors included
        (``{"error": ...}`` with their status), or None when the client went away. The caller
        sends the answer, then releases the lease, then runs what was put in ``after`` (a list:
        metrics and stats that may wait until the answer is written; None: done at once).
        Shared by the ASGI endpoint and the fast lane (gateway/fast_lane.py): both answer alike."""
        request_id = protocol.header_safe_id(headers.get("x-request-id")) or new_request_id()
        if method != "POST":
            body = protocol.error_body(f"method {method} is not allowed on an infer URL; use POST")
            out = {"content-type": _JSON, "allow": "POST", "x-request-id": request_id}
            return 405, body, out, None
        lease = self.state.body_budget.lease()
        model, version = target
        asyncq = self.state.asyncq
        try:
            if asyncq is not None and asyncq.takes(headers, model, version):
                status = 202  # the job's place in the async queue
                body, out_headers = await self._enqueue(
                    asyncq, receive, headers, lease, target, note
                )
            else:  # (no coroutine between: each level is paid twice a request, in and out)
                status = 200
                body, out_headers = await self._infer(
                    receive, headers, request_id, lease, model, version, note, after
                )
                body = await encode_content(body, out_headers, headers.get("accept-encoding"))
        except TidegateError as exc:
            status, body = exc.status, protocol.error_body(exc.message)
            out_headers = {"content-type": _JSON, "x-request-id": request_id, **exc.headers}
        except protocol.ClientGone:  # it left before its body was in: nobody to answer
            lease.release()
            # its line and count say so (nginx's 499), not the access log's default 500
            note["status"], note["request_id"] = 499, request_id
            return None
        except Exception as exc:  # never a bare 500 page: log it, answer in the protocol's shape
            log.exception("unhandled error on %s", path)
            status = 500
            body = protocol.error_body(f"internal error: {type(exc).__name__}")
            out_headers = {"content-type": _JSON, "x-request-id": request_id}
        note["status"] = status  # for the access log
        note["route"] = out_headers.get("x-tidegate-path", "")
        note["request_id"] = out_headers.get("x-request-id", request_id)
        return status, body, out_headers, lease

    async def _enqueue(self, asyncq, receive, headers, lease, target, note):
        """(body, headers) of a call the async queue takes: the job's place."""
        # its tenant for the access log and tidegate_requests_total (a 202 said "unknown")
        tenants = self.state.require_dispatcher().tenants
        note["tenant"] = tenants.authenticate(
            headers.get("authorization"), headers.get("x-api-key")
        ).name
        read = lambda: protocol.read_body(  # noqa: E731
            receive, headers, self.limit_bytes, lease, self.body_timeout_s
        )
        return await asyncq.submit(headers, *target, read)

    async def _infer(
        self,
        receive,
        headers: dict[str, str],
        request_id: str,
        lease,
        model: str,
        version: str | None,
        note: dict | None = None,
        after: list | None = None,
    ):
        t0 = time.perf_counter_ns()
        note = {} if note is None else note  # for the access log (gateway/access_log.py)
        dispatcher = self.state.require_dispatcher()
        tenant = dispatcher.tenants.authenticate(
            headers.get("authorization"), headers.get("x-api-key")
        )
        note["tenant"] = tenant.name
        # 403 before the model is looked up: a restricted tenant learns nothing of which other
        # models exist (a 404 for unknown ones and a 403 for real ones told it)
        dispatcher.tenants.check_model(tenant, model)
        cfg = find_model(dispatcher, model, version)
        version = version and cfg.version  # as found ("01" finds "1")
        stats = self.state.stats.model(cfg.name, cfg.version)
        try:
            body = await protocol.read_body(
                receive, headers, self.limit_bytes, lease, self.body_timeout_s
            )
            hl = protocol.header_length(headers)
            req = await protocol.decode_infer_off_loop(body, hl)
            req.inputs = wire_inputs(req, body, hl)  # forwarded as they came where they may
            if "x-request-id" not in headers and protocol.header_safe_id(req.id):
                request_id = req.id
            ctx = CallContext(
                tenant=tenant,
                model=model,
                version=version,
                forced_route=route_header(headers.get("x-tidegate-route")),
                workers=workers_header(headers.get("x-tidegate-workers")),
                request_id=request_id,
                after=after,
            )
            note["ctx"] = ctx
            result = await dispatcher.infer(ctx, req)
        except TidegateError:
            stats.request_done(False, time.perf_counter_ns() - t0)
            raise
        total_ns = time.perf_counter_ns() - t0
        first = next(iter(req.inputs.values()))
        service_ms = sum(result.timings_ms.values()) if result.timings_ms else 0.0
        later(
            ctx, count_answer, stats, total_ns, int(first.shape[0]) if first.ndim else 1, service_ms
        )
        out = _answer_headers(result, request_id, total_ns)
        return protocol.infer_response(cfg, req, result.outputs, out)


async def _refuse_repeated(scope, send, name: str, note: dict) -> None:
    """400 for a request with a key header twice, on every route alike (tenants/headers.py);
    ``note``: the access log's, counted as any refusal before routing."""
    headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
    request_id = protocol.header_safe_id(headers.get("x-request-id")) or new_request_id()
    note["status"], note["request_id"] = 400, request_id
    out = {"content-type": _JSON, "x-request-id": request_id}
    await protocol.send_response(send, 400, protocol.error_body(repeated_message(name)), out)


def _replay(body: bytes, receive):
    """An ASGI ``receive`` that gives ``body`` whole, then what ``receive`` gives (a
    disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _answer_headers(result, request_id: str, total_ns: int) -> dict[str, str]:
    timing = ", ".join(
        [f"total;dur={total_ns / 1e6:.2f}"]
        + [f"{k};dur={v:.2f}" for k, v in result.timings_ms.items()]
    )
    out = {
        "x-tidegate-path": result.path,
        "x-tidegate-cost-usd": f"{result.cost_usd:.10f}",
        "x-tidegate-workers": str(result.workers),
        "x-request-id": request_id,
        "server-timing": timing,
    }
    if result.cold_starts:
        out["x-tidegate-cold-starts"] = str(result.cold_starts)
    return out


def count_answer(stats, total_ns: int, rows: int, service_ms: float) -> None:
    """The model's statistics (``/v2/models/{m}/stats``) of one answered request (HTTP or
    gRPC): from the gateway's side, one execution of the request's rows."""
    stats.request_done(True, total_ns, rows)
    stats.batch_done(rows, int(service_ms * 1e6))


def route_header(value: str | None) -> str | None:
    """``X-Tidegate-Route`` (HTTP header or gRPC metadata): None, "vm" or "burst"."""
    if value is None:
        return None
    value = value.strip().lower()
    if value not in ("vm", "burst"):
        raise BadRequest("X-Tidegate-Route must be 'vm' or 'burst'")
    return value


def workers_header(value: str | None) -> int | None:
    """``X-Tidegate-Workers`` (HTTP header or gRPC metadata): None or an integer in ASCII."""
    if value is None:
        return None
    value = value.strip()
    digits = value[1:] if value.startswith("-") else value
    if not (digits.isascii() and digits.isdigit()):  # (int() takes "1_0", "+2" and "٣")
        raise BadRequest("X-Tidegate-Workers must be an integer")
    return int(value)
