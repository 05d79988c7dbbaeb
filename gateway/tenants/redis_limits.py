"""Limits shared by every gateway replica: counters in Redis, updated by one Lua script.

As Kong's ``redis`` rate-limiting policy: each admission is one round trip running a script,
which Redis executes atomically, so replicas cannot both take the last token. Time comes from
the caller (wall clock), and a bucket never moves back in time, so a replica whose clock lags
cannot mint tokens. If Redis cannot be reached the request is admitted (fail open, Kong's
``fault_tolerant``, the default): an outage of the limiter must not take inference down. With
``fail_open`` false (the ``fail_open`` setting) a request of a tenant with limits is refused
instead (503 with Retry-After: 1, gRPC UNAVAILABLE) until Redis answers: for an operator whose
quotas and budgets are money, not protection. An outage is logged
twice, a warning at its first failure and a line when Redis answers again (before: a warning every
10 s for as long as it lasted), and every request it let through unchecked is counted:
``tidegate_shared_limits_unavailable_total{op}`` (op: admit, charge, check).
"""

from __future__ import annotations

import hashlib
import logging
import time

from prometheus_client import CollectorRegistry, Counter

from ..errors import Unavailable
from .limits import LimitSpec, Refusal, Verdict, day_of, month_of, verdict_for
from .resp import PipelinedRedis, RespError

log = logging.getLogger("tidegate.tenants")

_TAKE = """
local now, rate, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local daily, monthly, budget = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if budget >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= budget then
  return {0, 'daily-budget', '0', 0}
end
local month = tonumber(redis.call('GET', KEYS[3]) or '0')
if monthly >= 0 and month >= monthly then return {0, 'monthly-quota', '0', 0} end
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if daily >= 0 and day >= daily then return {0, 'daily-quota', '0', 0} end
local tokens = 0
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local ts = now
  if state[1] then
    ts = math.max(tonumber(state[2]), now)
    tokens = math.min(size, tonumber(state[1]) + (ts - tonumber(state[2])) * rate)
  else
    tokens = size
  end
  local ttl_ms = math.ceil(size / rate * 1000) + 60000
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
    redis.call('PEXPIRE', KEYS[1], ttl_ms)
    return {0, 'rate', tostring(tokens), 0}
  end
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
end
day = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 172800)
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 2764800)
return {1, '', tostring(tokens), day}
"""

_CHARGE = """
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""

_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (_TAKE, _CHARGE)}


class RedisLimits:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tidegate",
        timeout_s: float = 0.5,
        registry: CollectorRegistry | None = None,
        fail_open: bool = True,
    ):
        self._client = PipelinedRedis(url, timeout_s=timeout_s)
        self.prefix = prefix
        self.fail_open = fail_open
        self.failures = 0
        self._outage_since_s: float | None = None  # monotonic time of the outage's first failure
        self._outage_failures = 0
        self._unavailable = Counter(
            "tidegate_shared_limits_unavailable",
            "Operations on the shared limits that Redis did not answer (a request admitted "
            "unchecked, or refused if fail_open is false; a spend left uncounted), by op "
            "(admit, charge, check).",
            ["op"],
            registry=registry,
        )

    def _keys(self, tenant: str, now_s: float) -> list[str]:
        base = f"{self.prefix}:{{{tenant}}}"  # one hash slot per tenant (Redis Cluster)
        day = day_of(now_s)
        return [
            f"{base}:bucket",
            f"{base}:day:{day}",
            f"{base}:month:{month_of(now_s)}",
            f"{base}:spend:{day}",
        ]

    async def take(self, tenant: str, spec: LimitSpec, now_s: float) -> Verdict:
        args = [
            repr(now_s),
            repr(spec.rate_per_s),
            repr(spec.bucket_size),
            _or_none(spec.daily_quota),
            _or_none(spec.monthly_quota),
            _or_none(spec.daily_budget_usd),
        ]
        try:
            allowed, refusal, tokens, requests_today = await self._script(
                _TAKE, self._keys(tenant, now_s), args
            )
        except Exception as exc:  # noqa: BLE001 - redis errors, timeouts, lost connections
            self._fail(exc, "admit")
            if not self.fail_open:
                raise Unavailable(
                    "rate limits, quotas and budgets cannot be checked (Redis does not answer) "
                    "and fail_open is false: refused until Redis is back"
                ) from None
            return Verdict(True)
        self._answered()
        if allowed:
            return verdict_for(None, spec, now_s, float(tokens), int(requests_today))
        return verdict_for(Refusal(_text(refusal)), spec, now_s, float(tokens))

    async def charge(self, tenant: str, cost_usd: float, now_s: float) -> None:
        if cost_usd <= 0:
            return
        try:
            await self._script(_CHARGE, [self._keys(tenant, now_s)[3]], [repr(cost_usd)])
        except Exception as exc:  # noqa: BLE001
            self._fail(exc, "charge")

    async def restore(
        self,
        tenant: str,
        *,
        requests_today: int,
        requests_this_month: int,
        spent_today_usd: float,
        now_s: float,
    ) -> None:
        """Nothing to do: the counters outlive any one gateway in Redis."""

    async def check(self) -> bool:
        """Whether Redis answers now; if not, the warning requests would give only at the first
        one (a gateway started with Redis down said nothing, and readiness is 200: fail open)."""
        try:
            await self._client.execute("PING")
        except Exception as exc:  # noqa: BLE001 - redis errors, timeouts, refused connections
            self._fail(exc, "check")
            return False
        self._answered()
        return True

    async def _script(self, script: str, keys: list[str], args: list[str]):
        sha = _SHA[script]
        try:
            return await self._client.execute("EVALSHA", sha, str(len(keys)), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._client.execute("SCRIPT", "LOAD", script)  # first use, or Redis restarted
        return await self._client.execute("EVALSHA", sha, str(len(keys)), *keys, *args)

    def _fail(self, exc: Exception, op: str) -> None:
        self.failures += 1
        self._outage_failures += 1
        self._unavailable.labels(op).inc()
        if self._outage_since_s is None:  # once an outage, not once a request
            self._outage_since_s = time.monotonic()
            log.warning(
                "shared limits unavailable (%s): %s: %s; no rate limits, quotas or budgets until "
                "Redis answers",
                "admitting requests" if self.fail_open else "refusing limited requests: 503",
                type(exc).__name__,
                exc,
            )

    def _answered(self) -> None:
        if self._outage_since_s is not None:
            log.warning(
                "shared limits back: Redis answers again after %.1f s (%d operations unchecked)",
                time.monotonic() - self._outage_since_s,
                self._outage_failures,
            )
            self._outage_since_s, self._outage_failures = None, 0

    async def close(self) -> None:
        await self._client.close()


def _or_none(value) -> str:
    return "-1" if value is None else repr(float(value))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
