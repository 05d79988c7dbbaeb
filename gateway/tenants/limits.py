"""Per-tenant limits: a token bucket, daily and monthly request quotas, a daily budget.

``LocalLimits`` keeps the counters in this process; ``RedisLimits`` (redis_limits.py) keeps them
in Redis so every gateway replica draws from the same bucket. Both take the time as an argument
(wall-clock seconds), so tests and the benchmark drive them with an injected clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Protocol

DAY_S = 86400.0


class Refusal(str, Enum):
    RATE = "rate"
    DAILY_QUOTA = "daily-quota"
    MONTHLY_QUOTA = "monthly-quota"
    DAILY_BUDGET = "daily-budget"


@dataclass(frozen=True)
class LimitSpec:
    rate_per_s: float = 0.0  # 0: no bucket
    bucket_size: float = 1.0
    daily_quota: int | None = None
    monthly_quota: int | None = None
    daily_budget_usd: float | None = None

    @property
    def unlimited(self) -> bool:
        return (
            self.rate_per_s <= 0
            and self.daily_quota is None
            and self.monthly_quota is None
            and self.daily_budget_usd is None
        )


@dataclass(frozen=True)
class Verdict:
    """The outcome of one admission, with what the X-RateLimit-* headers report."""

    allowed: bool
    refusal: Refusal | None = None
    limit: float | None = None  # the limit reported (bucket size, or the quota)
    remaining: float = 0.0
    reset_s: float = 0.0  # until that limit is back to full
    retry_after_s: float = 0.0  # refused: until the request could pass

    def headers(self) -> dict[str, str]:
        if self.limit is None:
            return {}
        return {
            "X-RateLimit-Limit": str(int(self.limit)),
            "X-RateLimit-Remaining": str(max(0, int(self.remaining))),
            "X-RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
        }


class Limits(Protocol):
    async def take(self, tenant: str, spec: LimitSpec, now_s: float) -> Verdict: ...
    async def charge(self, tenant: str, cost_usd: float, now_s: float) -> None: ...
    async def restore(
        self,
        tenant: str,
        *,
        requests_today: int,
        requests_this_month: int,
        spent_today_usd: float,
        now_s: float,
    ) -> None: ...
    async def check(self) -> bool: ...
    async def close(self) -> None: ...


def day_of(now_s: float) -> int:
    return int(now_s // DAY_S)


def month_of(now_s: float) -> int:
    moment = datetime.fromtimestamp(now_s, timezone.utc)
    return moment.year * 12 + moment.month - 1


def day_start_s(now_s: float) -> float:
    return day_of(now_s) * DAY_S


def month_start_s(now_s: float) -> float:
    moment = datetime.fromtimestamp(now_s, timezone.utc)
    return datetime(moment.year, moment.month, 1, tzinfo=timezone.utc).timestamp()


def next_month_start_s(now_s: float) -> float:
    index = month_of(now_s) + 1
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc).timestamp()


@dataclass
class _Counters:
    tokens: float = -1.0  # -1: a fresh bucket, full at first use
    bucket_ts: float = 0.0
    day: int = -1
    requests_today: int = 0
    month: int = -1
    requests_this_month: int = 0
    spent_today_usd: float = 0.0
    spend_day: int = -1


@dataclass
class LocalLimits:
    """Counters in this process (one gateway replica, or limits per replica)."""

    _counters: dict[str, _Counters] = field(default_factory=dict)

    def _roll(self, tenant: str, now_s: float) -> _Counters:
        c = self._counters.setdefault(tenant, _Counters())
        day, month = day_of(now_s), month_of(now_s)
        if c.day != day:
            c.day, c.requests_today = day, 0
        if c.month != month:
            c.month, c.requests_this_month = month, 0
        if c.spend_day != day:
            c.spend_day, c.spent_today_usd = day, 0.0
        return c

    async def take(self, tenant: str, spec: LimitSpec, now_s: float) -> Verdict:
        return self.take_now(tenant, spec, now_s)

    def take_now(self, tenant: str, spec: LimitSpec, now_s: float) -> Verdict:
        """``take`` without the coroutine (the event loop runs one at a time: atomic)."""
        c = self._roll(tenant, now_s)
        refused = _check_quotas(
            spec, c.spent_today_usd, c.requests_today, c.requests_this_month, now_s
        )
        if refused is not None:
            return refused
        if spec.rate_per_s > 0:
            tokens = (
                spec.bucket_size
                if c.tokens < 0
                else min(
                    spec.bucket_size, c.tokens + max(0.0, now_s - c.bucket_ts) * spec.rate_per_s
                )
            )
            c.bucket_ts = now_s
            if tokens < 1.0:
                c.tokens = tokens
                return verdict_for(Refusal.RATE, spec, now_s, tokens)
            c.tokens = tokens - 1.0
        c.requests_today += 1
        c.requests_this_month += 1
        return verdict_for(None, spec, now_s, c.tokens, c.requests_today)

    async def charge(self, tenant: str, cost_usd: float, now_s: float) -> None:
        self._roll(tenant, now_s).spent_today_usd += cost_usd

    async def restore(
        self,
        tenant: str,
        *,
        requests_today: int,
        requests_this_month: int,
        spent_today_usd: float,
        now_s: float,
    ) -> None:
        c = self._roll(tenant, now_s)
        c.requests_today, c.requests_this_month = requests_today, requests_this_month
        c.spent_today_usd = spent_today_usd

    async def check(self) -> bool:
        """Whether the limits can be kept now (in this process: always)."""
        return True

    async def close(self) -> None:
        pass


def _check_quotas(
    spec: LimitSpec,
    spent_today_usd: float,
    requests_today: int,
    requests_this_month: int,
    now_s: float,
) -> Verdict | None:
    """The refusal of the first exhausted quota (budget, month, day), or None."""
    if spec.daily_budget_usd is not None and spent_today_usd >= spec.daily_budget_usd:
        return verdict_for(Refusal.DAILY_BUDGET, spec, now_s)
    if spec.monthly_quota is not None and requests_this_month >= spec.monthly_quota:
        return verdict_for(Refusal.MONTHLY_QUOTA, spec, now_s)
    if spec.daily_quota is not None and requests_today >= spec.daily_quota:
        return verdict_for(Refusal.DAILY_QUOTA, spec, now_s)
    return None


def verdict_for(
    refusal: Refusal | None,
    spec: LimitSpec,
    now_s: float,
    tokens: float = 0.0,
    requests_today: int = 0,
) -> Verdict:
    """The verdict (and header values) of an outcome; shared by the local and Redis limits."""
    to_midnight = DAY_S - now_s % DAY_S
    if refusal is Refusal.DAILY_BUDGET:
        return Verdict(False, refusal, None, 0.0, to_midnight, to_midnight)
    if refusal is Refusal.MONTHLY_QUOTA:
        to_month_end = next_month_start_s(now_s) - now_s
        return Verdict(False, refusal, spec.monthly_quota, 0.0, to_month_end, to_month_end)
    if refusal is Refusal.DAILY_QUOTA:
        return Verdict(False, refusal, spec.daily_quota, 0.0, to_midnight, to_midnight)
    if refusal is Refusal.RATE:
        return Verdict(
            False,
            refusal,
            spec.bucket_size,
            0.0,
            (spec.bucket_size - tokens) / spec.rate_per_s,
            (1.0 - tokens) / spec.rate_per_s,
        )
    # admitted: the headers report the bucket, else the daily quota
    if spec.rate_per_s > 0:
        return Verdict(
            True,
            None,
            spec.bucket_size,
            math.floor(tokens),
            (spec.bucket_size - tokens) / spec.rate_per_s,
        )
    if spec.daily_quota is not None:
        return Verdict(True, None, spec.daily_quota, spec.daily_quota - requests_today, to_midnight)
    return Verdict(True)
