"""Callbacks: the finished answer POSTed to the caller's URL, signed so the tenant can verify it.

Signature header: ``X-Tidegate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``b"<t>." + body`` with the tenant's callback secret (Stripe's scheme: the timestamp in the MAC
stops replays of old deliveries). To verify, recompute the MAC with the same secret, compare in
constant time, and refuse a ``t`` more than a few minutes old: ``verify_signature`` does that.

Where a callback may go: never to a link-local or cloud metadata address (169.254.0.0/16, where
AWS, GCP and Azure serve instance credentials, fd00:ec2::254, Alibaba's 100.100.100.200), nor
an unspecified, multicast or reserved one; loopback and private addresses only while
``callback_allow_private`` is on. An address in the URL is checked at submit (a 400); a name is
checked as it is resolved for the POST (``new_session``'s resolver, so a name that later
resolves elsewhere is caught too), and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

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


_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in practice
PRIVATE_REFUSED = (
    "a private or loopback address; async_queue.callback_allow_private = true allows those"
)


def refused_address(host: str, allow_private: bool = False) -> str | None:
    """Why a callback may not go to the address ``host`` (None: it may, or it is a name)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:  # the legacy forms resolvers still take: 2852039166, 0xa9fea9fe, 169.254.169.254.
            ip = ipaddress.ip_address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None  # a name
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA or ip.is_link_local:
        return "a link-local or cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a unicast address"
    if ip.is_loopback or ip.is_private or ip in _SHARED:
        return None if allow_private else PRIVATE_REFUSED
    return "a reserved address" if ip.is_reserved else None


def check_callback_url(url: str, allow_private: bool = False) -> str:
    try:  # (urlsplit refuses "http://[::1", .port "http://h:99999"; both were a 500)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for its ValueError
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"callback URL must be an absolute http(s) URL, got {url!r}")
    if reason := refused_address(parts.hostname, allow_private):
        raise BadRequest(f"callback URL may not point at {parts.hostname} ({reason})")
    return url


class RefusedAddress(OSError):
    """A callback host resolved to an address callbacks may not go to."""


class _CheckedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to a refused address."""

    def __init__(self, allow_private: bool):
        self._inner = aiohttp.DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for info in found:
            if reason := refused_address(info["host"], self._allow_private):
                message = f"{host} resolves to a refused address, {info['host']} ({reason})"
                raise RefusedAddress(errno.EACCES, message)
        return found

    async def close(self) -> None:
        await self._inner.close()


def new_session(allow_private: bool = False) -> aiohttp.ClientSession:
    """The session callbacks are sent with: names are checked as they are resolved."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=_CheckedResolver(allow_private))
    )


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
    allow_private: bool = False,
) -> bool:
    """POST the job's answer to its callback URL; True once a 2xx came back. Redirects are
    not followed (a 3xx is a refusal); a URL that may not be reached is not tried."""
    assert job.callback_url is not None
    try:  # (checked at submit too; a producer's job or an older record was not)
        url = check_callback_url(job.callback_url, allow_private)
    except BadRequest as exc:
        log.warning("callback for %s not sent: %s", job.id, exc.message)
        return False
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
            url,
            allow_redirects=False,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if not 200 <= resp.status < 300:
                raise _Refused(f"answered HTTP {resp.status}")

    def failed(exc: BaseException, attempt: int) -> bool:
        log.warning("callback for %s failed: %s", job.id, exc)
        refused = isinstance(getattr(exc, "os_error", None), RefusedAddress)
        return isinstance(exc, _UNDELIVERED) and not refused

    policy = RetryPolicy(attempts, backoff_s, backoff_max_s=backoff_s * 2 ** (attempts - 1))
    try:
        await with_retries(post_once, failed, policy, what=f"callback for {job.id}")
    except _UNDELIVERED:
        return False
    return True
