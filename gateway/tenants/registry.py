"""The tenant registry: who is calling (API key), may it, and is it within its limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from .config import TenantSettings
from .keys import KeyIndex
from .limits import LimitSpec, Limits, LocalLimits, Refusal, Verdict

DEFAULT_TENANT = "default"

_REFUSAL_TEXT = {
    Refusal.DAILY_BUDGET: "has spent its daily budget (${limit:.4f})",
    Refusal.MONTHLY_QUOTA: "used its monthly quota ({limit:g} requests)",
    Refusal.DAILY_QUOTA: "used its daily quota ({limit:g} requests)",
    Refusal.RATE: "is over its rate limit ({limit:g} requests/s)",
}


_ADMITTED = Verdict(True)  # (frozen: one for every tenant without limits, not one a request)


@dataclass
class Tenant:
    settings: TenantSettings
    limits: LimitSpec

    @property
    def name(self) -> str:
        return self.settings.name


class TenantRegistry:
    """``limits`` defaults to per-process counters; pass ``RedisLimits`` to share them.
    ``clock`` is wall-clock seconds (days and months are UTC calendar ones)."""

    def __init__(
        self,
        tenants: list[TenantSettings],
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.clock = clock
        self.limits: Limits = limits or LocalLimits()
        self._keys = KeyIndex()
        self._tenants: dict[str, Tenant] = {}
        self.open = not tenants  # no tenants configured: keyless access as the default tenant
        if self.open:
            tenants = [TenantSettings(name=DEFAULT_TENANT, allow_route_override=True, admin=True)]
        for ts in tenants:
            if ts.name in self._tenants:
                raise ValueError(f"tenant {ts.name!r} is configured twice")
            spec = LimitSpec(
                rate_per_s=ts.rate_per_s,
                bucket_size=ts.bucket_size,
                daily_quota=ts.daily_quota,
                monthly_quota=ts.monthly_quota,
                daily_budget_usd=ts.daily_budget_usd,
            )
            self._tenants[ts.name] = Tenant(ts, spec)
            for key_hash in ts.api_key_hashes:
                self._keys.add(key_hash, ts.name)

    def tenants(self) -> list[Tenant]:
        return list(self._tenants.values())

    def get(self, name: str) -> Tenant | None:
        return self._tenants.get(name)

    def authenticate(self, authorization: str | None, api_key: str | None) -> Tenant:
        """The caller, from ``Authorization: Bearer <key>`` or ``x-api-key``; 401 otherwise.
        No message ever repeats the key."""
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
        owner = self._keys.owner(key)
        if owner is None:
            raise Unauthorized("unknown API key")
        return self._tenants[owner]

    @staticmethod
    def check_model(tenant: Tenant, model: str) -> None:
        """403 for a model the tenant may not use: before its body is read or checked (a 400
        about the body would tell it the model's inputs)."""
        allowed = tenant.settings.models
        if allowed and model not in allowed:
            raise Forbidden(f"tenant {tenant.name!r} may not use model {model!r}")

    async def admit(
        self, tenant: Tenant, *, route_override: bool = False, model: str | None = None
    ) -> Verdict:
        """Refuse with 403/429, or count the request against the tenant's limits. The verdict
        carries the X-RateLimit-* values an answer may show."""
        ts = tenant.settings
        if route_override and not ts.allow_route_override:
            raise Forbidden(f"tenant {tenant.name!r} may not choose the route or worker count")
        if model is not None:
            self.check_model(tenant, model)
        if tenant.limits.unlimited:
            return _ADMITTED
        verdict = await self.limits.take(tenant.name, tenant.limits, self.clock())
        if not verdict.allowed:
            text = _REFUSAL_TEXT[verdict.refusal].format(
                limit=_limit_of(verdict.refusal, tenant.limits)
            )
            raise TooManyRequests(
                f"tenant {tenant.name!r} {text}", verdict.retry_after_s, headers=verdict.headers()
            )
        return verdict

    async def charge(self, tenant: Tenant, cost_usd: float) -> None:
        if tenant.limits.daily_budget_usd is not None and cost_usd > 0:
            await self.limits.charge(tenant.name, cost_usd, self.clock())

    async def restore(self, usage: dict[str, tuple[int, int, float]]) -> None:
        """Seed per-process counters after a restart: tenant -> (requests today, requests this
        month, spent today in USD), from the ledger; shared limits that cannot be reached are
        said now (``Limits.check``)."""
        await self.limits.check()
        for name, (today, month, spent) in usage.items():
            if name in self._tenants:
                await self.limits.restore(
                    name,
                    requests_today=today,
                    requests_this_month=month,
                    spent_today_usd=spent,
                    now_s=self.clock(),
                )

    def authorize_usage(self, caller: Tenant, tenant_name: str) -> Tenant:
        """The tenant whose usage ``caller`` asks for: itself, or any if it is an admin.
        403 for another tenant's (never telling whether that tenant exists), 404 for admins."""
        if caller.name != tenant_name and not caller.settings.admin:
            raise Forbidden(f"tenant {caller.name!r} may read only its own usage")
        tenant = self._tenants.get(tenant_name)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_name!r}")
        return tenant

    async def close(self) -> None:
        await self.limits.close()


def _limit_of(refusal: Refusal | None, spec: LimitSpec) -> float:
    return {
        Refusal.DAILY_BUDGET: spec.daily_budget_usd,
        Refusal.MONTHLY_QUOTA: spec.monthly_quota,
        Refusal.DAILY_QUOTA: spec.daily_quota,
        Refusal.RATE: spec.rate_per_s,
    }[refusal] or 0.0
