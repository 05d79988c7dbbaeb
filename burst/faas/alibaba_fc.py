"""Invoker for Alibaba Cloud Function Compute 3.0 over its HTTP API (version 2023-03-30).

Wire format, from Alibaba Cloud's public documentation:
- InvokeFunction: ``POST /2023-03-30/functions/{functionName}/invocations?qualifier=...`` with
  ``x-fc-invocation-type: Sync`` and ``x-fc-log-type: Tail``; the body is the event bytes.
  The response carries ``x-fc-request-id``, ``x-fc-error-type`` when the function failed and
  ``x-fc-log-result`` (base64 of the last 4 KB of the log) when Tail was asked for.
- Signature V3 ("Request syntax and signature method V3", FC's "Signature mechanism" page):
  CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQueryString \\n CanonicalHeaders \\n
  SignedHeaders \\n hex(sha256(body)); StringToSign = "ACS3-HMAC-SHA256\\n" +
  hex(sha256(CanonicalRequest)); Signature = hex(hmac-sha256(secret, StringToSign));
  ``Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b>,Signature=<sig>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

import httpx

from burst.faas.base import Billing, InvokeError, InvokeErrorKind, InvokeResult, Invoker
from burst.retry import RetryPolicy, with_retries

API_VERSION = "2023-03-30"
SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
# The REPORT-like line at the end of an FC log tail; fields may be absent or reordered.
_LOG_FIELDS = {
    "duration_ms": re.compile(r"(?<!Billed )(?<!Init )\bDuration:\s*([0-9.]+)\s*ms"),
    "billed_ms": re.compile(r"Billed Duration:\s*([0-9.]+)\s*ms"),
    "memory_mb": re.compile(r"Memory Size:\s*([0-9.]+)\s*MB"),
    "max_memory_used_mb": re.compile(r"Max Memory Used:\s*([0-9.]+)\s*MB"),
    "init_ms": re.compile(r"Init Duration:\s*([0-9.]+)\s*ms"),
}


def rfc3986(value: str) -> str:
    """Percent-encode everything but A-Z a-z 0-9 - _ . ~ (space -> %20, * -> %2A)."""
    return quote(value, safe="-_.~")


def canonical_request(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    signed_headers: list[str],
    payload_sha256_hex: str,
) -> str:
    """V3 canonical request. ``path`` is decoded; ``headers`` has lower-case names."""
    canonical_uri = "/".join(rfc3986(seg) for seg in path.split("/")) or "/"
    canonical_query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(query.items()))
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri,
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_sha256_hex,
        ]
    )


def sign_v3(secret: str, canonical: str) -> str:
    string_to_sign = f"{SIGNATURE_ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def parse_log_billing(log_tail: str) -> dict[str, float]:
    """Pull duration/billed/memory/init figures out of an FC log tail (last match wins)."""
    found: dict[str, float] = {}
    for line in log_tail.splitlines():
        for name, pattern in _LOG_FIELDS.items():
            m = pattern.search(line)
            if m:
                found[name] = float(m.group(1))
    return found


class AlibabaFCInvoker(Invoker):
    """Synchronous FC 3.0 invocations over one pooled HTTP client. Retries throttling (429) only."""

    def __init__(
        self,
        *,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        qualifier: str = "LATEST",
        security_token: str | None = None,
        timeout_s: float = 900,
        max_connections: int = 64,
        throttle_retries: int = 4,
        throttle_backoff_s: float = 0.1,
        memory_mb: int = 0,
    ):
        if not endpoint:
            raise ValueError(
                "AlibabaFCInvoker needs an endpoint, e.g. https://<account>.cn-hangzhou.fc.aliyuncs.com"
            )
        if not access_key_id or not access_key_secret:
            raise ValueError("AlibabaFCInvoker needs access_key_id and access_key_secret")
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        parts = urlsplit(endpoint)
        self._base_url = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc  # signed as sent; a default port is never written in an endpoint
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._security_token = security_token
        self.qualifier = qualifier
        self.throttle_retries = throttle_retries
        self.throttle_backoff_s = throttle_backoff_s
        self.memory_mb = memory_mb  # reported in Billing when the log tail does not say
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    @classmethod
    def from_config(cls, cfg: dict) -> "AlibabaFCInvoker":
        """``{"endpoint", "access_key_id", "access_key_secret", "qualifier"?, "timeout_s"?, ...}``."""
        missing = [k for k in ("endpoint", "access_key_id", "access_key_secret") if not cfg.get(k)]
        if missing:
            raise ValueError(f"alibaba_fc config is missing {', '.join(missing)}")
        known = {
            "endpoint",
            "access_key_id",
            "access_key_secret",
            "qualifier",
            "security_token",
            "timeout_s",
            "max_connections",
            "throttle_retries",
            "throttle_backoff_s",
            "memory_mb",
        }
        return cls(**{k: v for k, v in cfg.items() if k in known})

    def signed_headers(self, function: str, payload: bytes) -> tuple[str, dict[str, str]]:
        """Return (path, headers) for one InvokeFunction request, signed with V3."""
        path = f"/{API_VERSION}/functions/{function}/invocations"
        body_sha = hashlib.sha256(payload).hexdigest()
        headers = {
            "host": self._host,
            "content-type": "application/octet-stream",
            "x-acs-action": "InvokeFunction",
            "x-acs-version": API_VERSION,
            "x-acs-date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x-acs-signature-nonce": uuid.uuid4().hex,
            "x-acs-content-sha256": body_sha,
            "x-fc-invocation-type": "Sync",
            "x-fc-log-type": "Tail",
        }
        if self._security_token:
            headers["x-acs-security-token"] = self._security_token
        signed = sorted(
            h for h in headers if h in ("host", "content-type") or h.startswith("x-acs-")
        )
        canonical = canonical_request(
            "POST", path, {"qualifier": self.qualifier}, headers, signed, body_sha
        )
        headers["authorization"] = (
            f"{SIGNATURE_ALGORITHM} Credential={self._access_key_id},"
            f"SignedHeaders={';'.join(signed)},Signature={sign_v3(self._access_key_secret, canonical)}"
        )
        return path, headers

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        if not isinstance(function, str) or not _FUNCTION_NAME_RE.match(function):
            raise ValueError(
                f"invalid FC function name {function!r}: letters, digits, '_' and '-', "
                "starting with a letter or '_', at most 128 characters"
            )
        # throttling only: an FC function error is not retried (its effects are unknown)
        policy = RetryPolicy(
            attempts=self.throttle_retries + 1,
            backoff_base_s=self.throttle_backoff_s,
            backoff_max_s=self.throttle_backoff_s * 2**self.throttle_retries,
        )
        return await with_retries(
            lambda: self._invoke_once(function, payload),
            lambda exc, _: isinstance(exc, InvokeError) and exc.kind is InvokeErrorKind.THROTTLED,
            policy,
            what=f"invoke {function}",
        )

    async def _invoke_once(self, function: str, payload: bytes) -> InvokeResult:
        path, headers = self.signed_headers(function, payload)  # fresh date and nonce per attempt
        started = time.perf_counter()
        try:
            resp = await self._client.post(
                self._base_url + path,
                params={"qualifier": self.qualifier},
                content=payload,
                headers=headers,
            )
        except httpx.HTTPError as e:
            raise InvokeError(f"FC {function}: transport error: {e!r}", kind="Transport") from e
        wall_ms = (time.perf_counter() - started) * 1000.0
        request_id = resp.headers.get("x-fc-request-id", "")
        if resp.status_code >= 300:
            raise self._platform_error(function, resp, request_id)
        billing = self._billing(resp, wall_ms)
        error_type = resp.headers.get("x-fc-error-type")
        if error_type:
            raise InvokeError(
                f"FC {function} ({request_id}): {error_type}: {_error_message(resp.content)}",
                kind=_function_error_kind(resp.content),
                billing=billing,
            )
        return InvokeResult(payload=resp.content, billing=billing)

    def _billing(self, resp: httpx.Response, wall_ms: float) -> Billing:
        log = resp.headers.get("x-fc-log-result", "")
        figures: dict[str, float] = {}
        if log:
            try:
                figures = parse_log_billing(base64.b64decode(log).decode("utf-8", "replace"))
            except ValueError:
                figures = {}
        # Without a report line the round trip is the best bound we have on billed time.
        duration_ms = figures.get("duration_ms", wall_ms)
        billed_ms = int(figures["billed_ms"]) if "billed_ms" in figures else math.ceil(duration_ms)
        init_ms = figures.get("init_ms", 0.0)
        return Billing(
            duration_ms=duration_ms,
            billed_ms=max(billed_ms, 1),
            memory_mb=int(figures.get("memory_mb", self.memory_mb)),
            max_memory_used_mb=int(math.ceil(figures.get("max_memory_used_mb", 0.0))),
            cold_start="init_ms" in figures,
            init_ms=init_ms,
        )

    @staticmethod
    def _platform_error(function: str, resp: httpx.Response, request_id: str) -> InvokeError:
        code, message = "", resp.text[:500]
        try:
            body = resp.json()
            code = body.get("Code") or body.get("ErrorCode") or ""
            message = body.get("Message") or body.get("ErrorMessage") or message
        except (ValueError, AttributeError):
            pass
        status = resp.status_code
        if status == 429:
            kind = "Throttled"
        elif status == 404:
            kind = "NotFound"
        elif status in (401, 403):
            kind = "AccessDenied"
        elif status >= 500:
            kind = "ServiceError"
        else:
            kind = "BadRequest"
        return InvokeError(
            f"FC {function} ({request_id or 'no request id'}): HTTP {status} {code}: {message}",
            kind=kind,
        )

    async def close(self) -> None:
        await self._client.aclose()


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("errorMessage") or data.get("message") or data)[:500]
    except (ValueError, AttributeError):
        return body[:500].decode("utf-8", "replace")


def _function_error_kind(body: bytes) -> str:
    """FC reports timeouts and OOM as function errors; name them so callers can react."""
    text = _error_message(body).lower()
    if "timed out" in text or "timeout" in text:
        return "Timeout"
    if "out of memory" in text or "memory limit" in text:
        return "OutOfMemory"
    return "FunctionError"
