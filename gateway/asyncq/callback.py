"""Callbacks: the finished answer POSTed to the caller's URL, signed so the tenant can verify it.

Signature header: ``X-Tidegate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``b"<t>." + body`` with the tenant's callback secret (Stripe's scheme: the timestamp in the MAC
stops replays of old deliveries). To verify, recompute the MAC with the same secret, compare in
constant time, and refuse a ``t`` more than a few minutes old: ``verify_signature`` does that.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from urllib.parse import urlsplit

import aiohttp

from burst.retry import RetryPolicy, with_retries

from ..errors import BadRequest
from .jobs import Job

log = logging.getLogger("tidegate.async")
SIGNATURE_HEADER = "X-Tidegate-Signature"


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, now_s: float, tolerance_s: float = 300.0
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp_s = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp_s, body), header.strip())


def check_callback_url(url: str) -> str:
    try:  # (urlsplit refuses "http://[::1", .port "http://h:99999"; both were a 500)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"callback URL must be an absolute http(s) URL, got {url!r}")
    return url


# the answer's headers a callback carries: how to decode it, and where it ran at what cost
_FORWARDED = (
    "content-type",
    "inference-header-content-length",
    "x-tidegate-path",
    "x-tidegate-cost-usd",
)


class _Refused(Exception):
    """The callback URL answered, but not 2xx."""


_UNDELIVERED = (_Refused, aiohttp.ClientError, asyncio.TimeoutError)


async def deliver(
    session: aiohttp.ClientSession,
    job: Job,
    secret: str,
    now_s: float,
    *,
    attempts: int,
    timeout_s: float,
    backoff_s: float = 0.5,
) -> bool:
    """POST the job's answer to its callback URL; True once a 2xx came back."""
    body = job.result or b""
    headers = {
        **{k: v for k, v in job.result_headers.items() if k in _FORWARDED},
        "x-request-id": job.id,
        "x-tidegate-request-state": job.state.value,
        "x-tidegate-status": str(job.status),
        SIGNATURE_HEADER: sign(secret, int(now_s), body),
    }

    async def post_once() -> None:
        async with session.post(
            job.callback_url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if not 200 <= resp.status < 300:
                raise _Refused(f"answered HTTP {resp.status}")

    def failed(exc: BaseException, attempt: int) -> bool:
        log.warning("callback for %s failed: %s", job.id, exc)
        return isinstance(exc, _UNDELIVERED)

    policy = RetryPolicy(attempts, backoff_s, backoff_max_s=backoff_s * 2 ** (attempts - 1))
    try:
        await with_retries(post_once, failed, policy, what=f"callback for {job.id}")
    except _UNDELIVERED:
        return False
    return True
