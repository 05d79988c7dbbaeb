"""Tenants: API keys, token-bucket rate limits, daily quotas, budgets."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from .errors import Forbidden, TooManyRequests, Unauthorized
from .settings import TenantSettings

DEFAULT_TENANT = "default"


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float = 0.0
    updated_s: float = field(default_factory=time.monotonic)

    def take(self, now_s: float, amount: float = 1.0) -> float:
        """Take ``amount`` tokens; return 0 on success, else seconds until they would be there."""
        self.tokens = min(self.capacity, self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate_per_s


@dataclass
class Tenant:
    settings: TenantSettings
    bucket: TokenBucket | None
    day: int = -1
    requests_today: int = 0
    spent_usd: float = 0.0

    @property
    def name(self) -> str:
        return self.settings.name


class TenantRegistry:
    """Resolves the caller from its key and admits or refuses the request."""

    def __init__(self, tenants: list[TenantSettings], clock=time.monotonic, wall=time.time):
        self._clock, self._wall = clock, wall
        self._by_key: dict[str, Tenant] = {}
        self._tenants: dict[str, Tenant] = {}
        self.open = not tenants  # no tenants configured: keyless access as the default tenant
        if self.open:
            tenants = [TenantSettings(name=DEFAULT_TENANT, allow_route_override=True)]
        for ts in tenants:
            if ts.name in self._tenants:
                raise ValueError(f"tenant {ts.name!r} is configured twice")
            bucket = None
            if ts.rate_per_s > 0:
                cap = float(ts.burst or max(1.0, ts.rate_per_s))
                bucket = TokenBucket(ts.rate_per_s, cap, tokens=cap, updated_s=clock())
            tenant = Tenant(ts, bucket)
            self._tenants[ts.name] = tenant
            for key in ts.api_keys:
                if key in self._by_key:
                    raise ValueError("an API key is shared by two tenants")
                self._by_key[key] = tenant

    def tenants(self) -> list[Tenant]:
        return list(self._tenants.values())

    def get(self, name: str) -> Tenant | None:
        return self._tenants.get(name)

    def authenticate(self, authorization: str | None, api_key: str | None) -> Tenant:
        if self.open:
            return self._tenants[DEFAULT_TENANT]
        key = api_key
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization must be 'Bearer <api key>'")
            key = token.strip()
        if not key:
            raise Unauthorized("missing API key (Authorization: Bearer <key> or x-api-key)")
        for known, tenant in self._by_key.items():
            if hmac.compare_digest(known, key):
                return tenant
        raise Unauthorized("unknown API key")

    def admit(self, tenant: Tenant, *, route_override: bool) -> None:
        """Refuse with 403/429 or count the request against the tenant's limits."""
        ts = tenant.settings
        if route_override and not ts.allow_route_override:
            raise Forbidden(f"tenant {tenant.name!r} may not choose the route or worker count")
        if ts.budget_usd is not None and tenant.spent_usd >= ts.budget_usd:
            raise TooManyRequests(f"tenant {tenant.name!r} has spent its budget "
                                  f"(${ts.budget_usd:.4f})", retry_after_s=3600)
        day = int(self._wall() // 86400)
        if day != tenant.day:
            tenant.day, tenant.requests_today = day, 0
        if ts.daily_quota is not None and tenant.requests_today >= ts.daily_quota:
            wait = 86400 - self._wall() % 86400
            raise TooManyRequests(f"tenant {tenant.name!r} used its daily quota "
                                  f"({ts.daily_quota} requests)", retry_after_s=wait)
        if tenant.bucket is not None:
            wait = tenant.bucket.take(self._clock())
            if wait > 0:
                raise TooManyRequests(f"rate limit of {ts.rate_per_s:g} requests/s exceeded",
                                      retry_after_s=wait)
        tenant.requests_today += 1

    def charge(self, tenant: Tenant, cost_usd: float) -> None:
        tenant.spent_usd += cost_usd
