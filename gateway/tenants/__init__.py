"""Tenants: hashed API keys, permissions, and limits (local or shared through Redis)."""

from .config import TenantSettings, hash_key
from .headers import refuse_repeated_keys, repeated_key_header, repeated_message
from .limits import LimitSpec, Limits, LocalLimits, Refusal, Verdict
from .registry import DEFAULT_TENANT, Tenant, TenantRegistry


def make_limits(redis_url: str | None, registry=None, *, fail_open: bool = True) -> Limits:
    """Shared counters when a Redis URL is configured (their outages counted on the Prometheus
    ``registry``; ``fail_open`` false refuses limited requests while Redis is down), per-process
    ones otherwise."""
    if redis_url:
        from .redis_limits import RedisLimits

        return RedisLimits(redis_url, registry=registry, fail_open=fail_open)
    return LocalLimits()


__all__ = [
    "DEFAULT_TENANT",
    "LimitSpec",
    "Limits",
    "LocalLimits",
    "Refusal",
    "Tenant",
    "TenantRegistry",
    "TenantSettings",
    "Verdict",
    "hash_key",
    "make_limits",
    "refuse_repeated_keys",
    "repeated_key_header",
    "repeated_message",
]
