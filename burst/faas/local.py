"""LocalInvoker: the client of the embedded function runtime (Lambda's Invoke API on loopback)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from burst.faas.base import InvokeError, InvokeErrorKind, InvokeResult
from burst.faas.http_lite import LiteHttp
from burst.faas.lambda_wire import (
    API_PREFIX,
    api_error,
    decode_log_result,
    function_error,
    invoke_path,
    parse_report,
    retry_invoke_on,
)
from burst.retry import RetryPolicy, with_retries

_CONFIG_KEYS = {"kind", "endpoint", "timeout_s", "throttle_retries", "throttle_backoff_max_s"}


async def _body_sent(session, ctx, params) -> None:
    """aiohttp calls this just before it writes a request body, in the same step as the write:
    whoever waits on the event runs once the bytes are with the kernel."""
    sent = ctx.trace_request_ctx
    if isinstance(sent, asyncio.Event):
        sent.set()


class LocalInvoker:
    """Invokes functions on a ``LocalFunctionRuntime`` (or anything speaking Lambda's Invoke
    API without signing) over pooled HTTP connections. Throttling is retried with backoff and
    a crashed instance once, as on Lambda (``burst.faas.lambda_wire.retry_invoke_on``).

    ``invoke(..., sent=event)`` sets ``event`` once the request is on the wire, so a master can
    then compute its own leg on its event loop, after every remote leg has been sent (a
    compute thread beside the loop delayed each send by 2-11 ms fighting it for the GIL)."""

    signals_sent = True  # invoke() takes ``sent`` (burst.forkjoin looks for this)

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_s: float = 900,
        throttle_retries: int = 6,
        throttle_backoff_max_s: float = 1.0,
    ):
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {endpoint!r} must be an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(
            attempts=throttle_retries + 1, backoff_max_s=throttle_backoff_max_s
        )
        self._session: aiohttp.ClientSession | None = None
        url = urlsplit(self.endpoint)
        # Invoke calls over plain HTTP take the light client (burst.faas.http_lite)
        self._lite = (
            LiteHttp(url.hostname or "127.0.0.1", url.port or 80, url.path)
            if url.scheme == "http"
            else None
        )

    @classmethod
    def from_config(cls, cfg) -> "LocalInvoker":
        """``{"kind": "local", "endpoint": "http://127.0.0.1:9000", "timeout_s": 900}``"""
        unknown = set(cfg) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown local invoker settings: {sorted(unknown)}")
        if not cfg.get("endpoint"):
            raise ValueError("local invoker needs 'endpoint' (the function runtime's URL)")
        return cls(
            cfg["endpoint"],
            **{k: v for k, v in cfg.items() if k not in ("kind", "endpoint") and v is not None},
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_chunk_sent.append(_body_sent)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=0),  # the runtime's cap is the limit
                trace_configs=[trace],
            )
        return self._session

    async def invoke(
        self, function: str, payload: bytes, *, sent: asyncio.Event | None = None
    ) -> InvokeResult:
        return await with_retries(
            lambda: self._invoke_once(function, payload, sent),
            retry_invoke_on,
            self.retry,
            what=f"invoke {function}",
        )

    async def _invoke_once(
        self, function: str, payload: bytes, sent: asyncio.Event | None = None
    ) -> InvokeResult:
        headers = {
            "X-Amz-Invocation-Type": "RequestResponse",
            "X-Amz-Log-Type": "Tail",
            "Content-Type": "application/json",
        }
        if self._lite is None:
            status, got, body = await self._post_aiohttp(function, payload, headers, sent)
        else:
            status, got, body = await self._post_lite(function, payload, headers, sent)
        if status != 200:
            raise self._api_error(function, status, got, body)
        billing = parse_report(decode_log_result(got.get("x-amz-log-result")))
        if got.get("x-amz-function-error"):
            raise function_error(function, body, billing)
        return InvokeResult(payload=body, billing=billing)

    async def _post_lite(self, function: str, payload: bytes, headers: dict, sent):
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await self._lite.post(invoke_path(function), payload, headers, sent=sent)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            raise InvokeError(
                f"{function}: transport error: {exc!r}", kind=InvokeErrorKind.TRANSPORT
            ) from exc
        return resp.status, resp.headers, resp.body

    async def _post_aiohttp(self, function: str, payload: bytes, headers: dict, sent):
        try:
            async with self._client().post(
                self.endpoint + invoke_path(function),
                data=payload,
                headers=headers,
                trace_request_ctx=sent,
            ) as resp:
                body = await resp.read()
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InvokeError(
                f"{function}: transport error: {exc!r}", kind=InvokeErrorKind.TRANSPORT
            ) from exc

    @staticmethod
    def _api_error(function: str, status: int, headers, body: bytes) -> InvokeError:
        """``headers``: names lower-cased (or a case-insensitive mapping)."""
        code = headers.get("x-amzn-errortype", "").split(":")[0]
        try:
            data = orjson.loads(body)
            message = data.get("message") or data.get("Message") or ""
        except (orjson.JSONDecodeError, AttributeError):
            message = body[:300].decode("utf-8", "replace")
        return api_error(function, status, code, message)

    async def prewarm(self, function: str, n: int) -> int:
        """Ask the runtime to keep at least ``n`` warm instances; returns how many it started."""
        url = f"{self.endpoint}{API_PREFIX}/functions/{quote(function, safe='')}/prewarm"
        try:
            async with self._client().post(url, params={"count": str(n)}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise self._api_error(function, resp.status, resp.headers, body)
                return int(orjson.loads(body)["started"])
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InvokeError(
                f"{function}: transport error: {exc!r}", kind=InvokeErrorKind.TRANSPORT
            ) from exc

    async def close(self) -> None:
        if self._lite is not None:
            await self._lite.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
