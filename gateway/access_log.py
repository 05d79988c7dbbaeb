"""One access-log line per request, and the per-request series the dashboards read.

Outermost ASGI middleware. For every request it logs method, path, status, tenant, model, route
(``vm``/``burst``), latency and request id to the ``tidegate.access`` logger, as text or as JSON
lines. For infer requests it also:
- counts answers the dispatcher never saw (refused before routing: 400, 401, 404, 413, 429 ...)
  in ``tidegate_requests_total`` with ``path="none"``, so every answer is counted with its code;
  so is every refusal (4xx, 5xx) on any other path (an unknown path's 404, a GET on infer's 405,
  a model's metadata 404 ...), health probes and /metrics scrapes excepted; gRPC's infer counts
  its refusals the same way (``count_refusal``, the code being the HTTP status its gRPC status
  maps from);
- counts ``tidegate_slo_requests_total`` / ``tidegate_slo_met_total`` per tenant and model
  (attainment = met / requests; 4xx answers are the client's and are not counted).

A request the HTTP parser refuses (a malformed request line, header or framing, a head too
large: gateway/fast_lane.py answers it 400 without the app) gets its line and its count through
``refused_by_parser``, whatever its path; one refused while the app was reading its body is
marked ``scope[PARSER_REFUSED] = <the 400's request id>`` and its own line and count say 400
(not the 499 of a client gone).

The infer endpoint fills ``scope[NOTE_KEY]`` (tenant once authenticated, the call context once
built, and the status, route and request id it answered with, so infer's ``send`` is not
wrapped); the dispatcher marks the context once it has counted the request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable

import orjson

from .infer_endpoint import INFER_PATH, NOTE_KEY

__all__ = ["NOTE_KEY", "PARSER_REFUSED", "AccessLog", "count_refusal", "log_to_stream"]
log = logging.getLogger("tidegate.access")
MODEL_KEY = "tidegate.model"  # scope key of an infer URL's model (as in its path), when known
PARSER_REFUSED = "tidegate.parser_refused"  # scope key: the HTTP parser answered it 400
UNCOUNTED = re.compile(r"^/(?:metrics|v2/health/|healthz|readyz|livez)")  # probes, scrapes
MODEL_IN_PATH = re.compile(r"^/v2/models/([^/]+)")


# A text line's value that a client chose (path, tenant, model, request id) with a space, quote,
# "=", backslash or control character is written quoted and escaped: a path with %0A in it
# wrote a forged access line of the client's choosing, %1B an escape sequence to the terminal
# of whoever tailed the log, and "tenant=café 😀" split into two fields.
_UNSAFE = re.compile(r'[\x00-\x20"=\\\x7f-\x9f\u2028\u2029]')
_ESCAPE = re.compile(r'[\x00-\x1f"\\\x7f-\x9f\u2028\u2029]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _field(value: str) -> str:
    """``value`` as one logfmt field: as it is when it is safe, else quoted and escaped."""
    if not _UNSAFE.search(value):
        return value
    return '"' + _ESCAPE.sub(_escaped, value) + '"'


def _escaped(match: re.Match) -> str:
    char = match[0]
    return _ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"
    )


_STREAM_SINK = None  # set by log_to_stream: the sink of every AccessLog made after it


def log_to_stream(fmt: str, stream=None) -> None:
    """``tidegate serve``: the access log's lines on ``stream`` (stdout, beside the banner: stderr
    keeps to warnings and errors), at any --log-level (its default, warning, kept them all
    back), each line as formatted: a JSON line is the JSON object alone (no time and logger
    name before it), a text line starts with the UTC time. Written in batches by a thread
    (gateway/access_log_stream.py), without health probes and /metrics scrapes."""
    global _STREAM_SINK
    if fmt == "off":
        return
    from .access_log_stream import LineWriter

    _STREAM_SINK = LineWriter(stream, timestamps=fmt == "text", skip=UNCOUNTED)


def count_refusal(metrics, tenant: str, model: str, status: int, known=None) -> None:
    """A refusal the dispatcher never saw, in ``tidegate_requests_total`` (``path="none"``).
    A model the gateway does not serve is counted as ``model="unknown"``: a client's made-up
    names must not each make a series (unbounded label values)."""
    if known is not None and model and model not in known:
        model = "unknown"
    metrics.add(metrics.requests, (tenant or "unknown", model, "none", str(status)))


class AccessLog:
    def __init__(self, app, *, state, fmt: str = "text", sink: Callable[[str], None] | None = None):
        if fmt not in ("text", "json", "off"):
            raise ValueError(f"access log format must be text, json or off, not {fmt!r}")
        self.app = app
        self.state = state
        self.fmt = fmt
        self._default_sink = log.info
        self.sink = sink or _STREAM_SINK or self._default_sink
        self._primed: set[str] = set()  # models whose burst-path counters exist at 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        note: dict = {}
        scope[NOTE_KEY] = note
        t0 = time.perf_counter()
        if scope["method"] == "POST" and INFER_PATH.match(scope["path"]):
            # the infer endpoint notes what it answered: no wrapper on its send
            try:
                await self.app(scope, receive, send)
            finally:
                self._done(scope, note, note, (time.perf_counter() - t0) * 1000.0)
            return
        seen = {"status": 500, "route": "", "request_id": ""}

        async def watch(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", ()):
                    if key == b"x-tidegate-path":
                        seen["route"] = value.decode("latin-1")
                    elif key == b"x-request-id":
                        seen["request_id"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._done(scope, note, seen, (time.perf_counter() - t0) * 1000.0)

    def done(self, scope, note: dict, latency_ms: float) -> None:
        """The line and counts of an infer POST answered outside this middleware (the fast lane,
        gateway/fast_lane.py): ``note`` as the infer endpoint filled it."""
        self._done(scope, note, note, latency_ms)

    def refused_by_parser(self, method: str, path: str, request_id: str) -> None:
        """The line and count of a request the HTTP parser refused (400) before any app saw it
        (``method`` and ``path`` as far as they were read, "" if not at all)."""
        scope = {"method": method or "-", "path": path or "-", PARSER_REFUSED: request_id}
        self._done(scope, {}, {}, 0.0)

    def _done(self, scope, note: dict, seen: dict, latency_ms: float) -> None:
        model = scope.get(MODEL_KEY)  # the fast lane matched the path already
        if model is None:
            match = INFER_PATH.match(scope["path"])
            model = match[1] if match else ""
        tenant = note.get("tenant", "")
        ctx = note.get("ctx")
        route = seen.get("route") or (getattr(ctx, "route", "") if ctx is not None else "")
        refused = scope.get(PARSER_REFUSED)  # the parser's 400 (its request id) is what was sent
        status = 400 if refused else seen.get("status", 500)
        if model and scope["method"] == "POST":
            self._count(tenant, model, route, status, latency_ms, ctx)
        elif status >= 400 and (refused or not UNCOUNTED.match(scope["path"])):
            named = MODEL_IN_PATH.match(scope["path"])
            named_model = named[1] if named else ""
            count_refusal(self.state.metrics, tenant, named_model, status, self.state.models)
        if self.fmt == "off" or (
            self.sink is self._default_sink and not log.isEnabledFor(logging.INFO)
        ):
            return  # nobody reads the line: do not format it
        skip = getattr(self.sink, "skip", None)  # serve's stdout leaves probes and scrapes out
        if skip is not None and not refused and skip.match(scope["path"]):
            return
        method, path = scope["method"], scope["path"]
        request_id = refused or seen.get("request_id") or "-"
        tenant, model, route, ms = tenant or "-", model or "-", route or "-", round(latency_ms, 3)
        if self.fmt == "json":
            self.sink(
                orjson.dumps(
                    {
                        "method": method,
                        "path": path,
                        "status": status,
                        "tenant": tenant,
                        "model": model,
                        "route": route,
                        "latency_ms": ms,
                        "request_id": request_id,
                    }
                ).decode()
            )
        else:  # one f-string: a third of the join's cost on every request
            if _UNSAFE.search(f"{method}{path}{tenant}{model}{request_id}"):  # (rare: ~0.2 us)
                method, path, tenant = _field(method), _field(path), _field(tenant)
                model, request_id = _field(model), _field(request_id)
            self.sink(
                f"method={method} path={path} status={status} tenant={tenant} model={model} "
                f"route={route} latency_ms={ms} request_id={request_id}"
            )

    def _count(
        self, tenant: str, model: str, route: str, status: int, latency_ms: float, ctx
    ) -> None:
        metrics = self.state.metrics
        if not getattr(ctx, "route", ""):  # refused before routing: the dispatcher never saw it
            count_refusal(metrics, tenant, model, status, self.state.models)
        if 400 <= status < 500 or status == 202 or not tenant:
            return  # the client's errors, and an async job's place (not an inference answer)
        if model not in self._primed:  # the dashboard's per-model series exist from the start
            self._primed.add(model)
            metrics.child(metrics.cold_starts, model)
            metrics.child(metrics.function_billed, model)
        metrics.add(metrics.slo_requests, (tenant, model))
        if 200 <= status < 300 and latency_ms <= self._slo_ms(tenant, model):
            metrics.add(metrics.slo_met, (tenant, model))

    def _slo_ms(self, tenant: str, model: str) -> float:
        t = self.state.tenants.get(tenant)
        if t is not None and t.settings.slo_ms:
            return t.settings.slo_ms
        cfg = self.state.models.get(model)
        return cfg.slo_ms if cfg is not None else 500.0
