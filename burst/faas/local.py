"""LocalInvoker: the client of the embedded function runtime (Lambda's Invoke API on loopback).

Also the Lambda response parsing that the AWS invoker shares: the REPORT line into ``Billing``
and a function error payload into ``InvokeError``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from urllib.parse import quote

import aiohttp
import orjson

from burst.faas.base import Billing, InvokeError, InvokeResult

_REPORT_FIELDS = {
    "duration_ms": re.compile(r"\bDuration:\s*([\d.]+)\s*ms"),
    "billed_ms": re.compile(r"Billed Duration:\s*(\d+)\s*ms"),
    "memory_mb": re.compile(r"Memory Size:\s*(\d+)\s*MB"),
    "max_memory_used_mb": re.compile(r"Max Memory Used:\s*(\d+)\s*MB"),
    "init_ms": re.compile(r"Init Duration:\s*([\d.]+)\s*ms"),
}
# errorType -> InvokeError.kind; anything else a function raises is "FunctionError"
_ERROR_KINDS = {"Runtime.OutOfMemory": "OutOfMemory", "Sandbox.Timedout": "Timeout"}
# Lambda's platform error codes -> InvokeError.kind
_API_ERROR_KINDS = {
    "TooManyRequestsException": "Throttled",
    "ResourceNotFoundException": "NotFound",
    "RequestEntityTooLargeException": "PayloadTooLarge",
    "RequestTooLargeException": "PayloadTooLarge",
}


def parse_report(log_tail: str) -> Billing:
    """Billing from the REPORT line of a Lambda log tail (tabs or spaces between fields)."""
    line = next((ln for ln in reversed(log_tail.splitlines()) if ln.startswith("REPORT ")), "")
    billing = Billing()
    if not line:
        return billing
    # "Duration:" also occurs in "Billed Duration:"; the plain one comes first on the line
    for name, pattern in _REPORT_FIELDS.items():
        match = pattern.search(line)
        if match:
            value = match.group(1)
            setattr(billing, name, float(value) if name in ("duration_ms", "init_ms")
                    else int(value))
    billing.cold_start = "Init Duration:" in line
    return billing


def decode_log_result(log_result: str | None) -> str:
    if not log_result:
        return ""
    try:
        return base64.b64decode(log_result).decode("utf-8", "replace")
    except ValueError:
        return ""


def function_error(function: str, payload: bytes, billing: Billing) -> InvokeError:
    """The InvokeError for a response flagged with X-Amz-Function-Error."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error_type = str(body.get("errorType", "Unhandled"))
    message = str(body.get("errorMessage", payload[:500].decode("utf-8", "replace")))
    kind = _ERROR_KINDS.get(error_type, "FunctionError")
    return InvokeError(f"{function}: {error_type}: {message}", kind=kind, billing=billing)


def api_error(function: str, status: int, code: str, message: str) -> InvokeError:
    """The InvokeError for a platform error response (429, 404, 413, ...)."""
    kind = _API_ERROR_KINDS.get(code, "Transport")
    return InvokeError(f"{function}: {code or status}: {message}", kind=kind)


class LocalInvoker:
    """Invokes functions on a ``LocalFunctionRuntime`` (or anything speaking Lambda's Invoke
    API without signing) over pooled HTTP connections."""

    def __init__(self, endpoint: str, *, timeout_s: float = 900):
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {endpoint!r} must be an http(s) URL")
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> "LocalInvoker":
        """``{"kind": "local", "endpoint": "http://127.0.0.1:9000", "timeout_s": 900}``"""
        unknown = set(cfg) - {"kind", "endpoint", "timeout_s"}
        if unknown:
            raise ValueError(f"unknown local invoker settings: {sorted(unknown)}")
        if "endpoint" not in cfg:
            raise ValueError("local invoker needs 'endpoint' (the function runtime's URL)")
        return cls(cfg["endpoint"], timeout_s=float(cfg.get("timeout_s", 900)))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=0))  # the runtime's cap is the limit
        return self._session

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        url = f"{self.endpoint}/2015-03-31/functions/{quote(function, safe='')}/invocations"
        headers = {"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail",
                   "Content-Type": "application/json"}
        try:
            async with self._client().post(url, data=payload, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise self._api_error(function, resp, body)
                billing = parse_report(decode_log_result(resp.headers.get("X-Amz-Log-Result")))
                if resp.headers.get("X-Amz-Function-Error"):
                    raise function_error(function, body, billing)
                return InvokeResult(payload=body, billing=billing)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InvokeError(f"{function}: transport error: {exc!r}", kind="Transport") from exc

    @staticmethod
    def _api_error(function: str, resp: aiohttp.ClientResponse, body: bytes) -> InvokeError:
        code = resp.headers.get("x-amzn-ErrorType", "").split(":")[0]
        try:
            data = orjson.loads(body)
            message = data.get("message") or data.get("Message") or ""
        except (orjson.JSONDecodeError, AttributeError):
            message = body[:300].decode("utf-8", "replace")
        return api_error(function, resp.status, code, message)

    async def prewarm(self, function: str, n: int) -> int:
        """Ask the runtime to keep at least ``n`` warm instances; returns how many it started."""
        url = f"{self.endpoint}/2015-03-31/functions/{quote(function, safe='')}/prewarm"
        try:
            async with self._client().post(url, params={"count": str(n)}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise self._api_error(function, resp, body)
                return int(orjson.loads(body)["started"])
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise InvokeError(f"{function}: transport error: {exc!r}", kind="Transport") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
