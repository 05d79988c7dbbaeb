"""Tenants: hashed keys, permissions, and limits per process or shared through a real Redis."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from gateway.settings import Settings, TenantSettings
from gateway.tenants import LocalLimits, TenantRegistry, hash_key
from gateway.tenants.redis_limits import RedisLimits

# 2026-03-31 23:59:00 UTC: a minute before both a day and a month end
T0 = datetime(2026, 3, 31, 23, 59, tzinfo=timezone.utc).timestamp()


class FakeClock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["local", "redis"])
def make_limits(request):
    """A factory of limit stores: per process, or one Redis shared by every store made."""
    if request.param == "local":
        return LocalLimits
    url = request.getfixturevalue("redis_url")
    return lambda: RedisLimits(url)


def registry(make_limits, clock, **tenant) -> TenantRegistry:
    return TenantRegistry(
        [TenantSettings(name="acme", api_keys=["k-acme"], **tenant)],
        limits=make_limits(),
        clock=clock,
    )


def test_plain_keys_are_hashed_at_load_and_never_kept():
    ts = TenantSettings(name="a", api_keys=["s3cret-key"])
    assert ts.api_keys == [] and ts.api_key_hashes == [hash_key("s3cret-key")]
    assert "s3cret-key" not in repr(ts) and "s3cret-key" not in str(ts.model_dump())
    settings = Settings.load(None, tenants=[{"name": "a", "api_keys": ["s3cret-key"]}])
    assert "s3cret-key" not in settings.model_dump_json()


def test_pre_hashed_keys_authenticate_and_bad_hashes_are_refused():
    digest = hash_key("k2").removeprefix("sha256:")
    reg = TenantRegistry(
        [
            TenantSettings(name="a", api_key_hashes=[f"sha256:{digest}"]),
            TenantSettings(
                name="b", api_key_hashes=[hash_key("kb").removeprefix("sha256:").upper()]
            ),
        ]
    )
    assert reg.authenticate("Bearer k2", None).name == "a"
    assert reg.authenticate(None, "kb").name == "b"
    with pytest.raises(ValueError, match="sha256"):
        TenantSettings(name="c", api_key_hashes=["md5:abc"])
    with pytest.raises(ValueError, match="shared by two tenants"):
        TenantRegistry(
            [
                TenantSettings(name="a", api_keys=["same"]),
                TenantSettings(name="b", api_key_hashes=[hash_key("same")]),
            ]
        )


def test_unknown_or_malformed_keys_get_401_without_repeating_the_key():
    reg = TenantRegistry([TenantSettings(name="a", api_keys=["ka"])])
    for auth, key in [
        (None, None),
        ("Bearer guess-123", None),
        ("Basic guess-123", None),
        (None, "guess-123"),
        ("Bearer ", None),
    ]:
        with pytest.raises(Unauthorized) as exc:
            reg.authenticate(auth, key)
        assert "guess-123" not in exc.value.message


def test_open_gateway_needs_no_key_and_may_choose_routes():
    reg = TenantRegistry([])
    tenant = reg.authenticate(None, None)
    assert tenant.name == "default"
    asyncio.run(reg.admit(tenant, route_override=True))


async def test_token_bucket_is_exact_and_429_carries_rate_limit_headers(make_limits):
    clock = FakeClock()
    reg = registry(make_limits, clock, rate_per_s=2, burst=3)
    acme = reg.authenticate(None, "k-acme")
    verdicts = [await reg.admit(acme) for _ in range(3)]
    assert [v.headers()["X-RateLimit-Remaining"] for v in verdicts] == ["2", "1", "0"]
    with pytest.raises(TooManyRequests) as exc:
        await reg.admit(acme)
    h = exc.value.headers
    assert (
        h["Retry-After"],
        h["X-RateLimit-Limit"],
        h["X-RateLimit-Remaining"],
        h["X-RateLimit-Reset"],
    ) == ("1", "3", "0", "2")  # full again in 3 / 2 = 1.5 s
    clock.t += 0.5  # one token back at 2/s
    await reg.admit(acme)
    with pytest.raises(TooManyRequests):
        await reg.admit(acme)
    clock.t += 100  # never more than the bucket holds
    for _ in range(3):
        await reg.admit(acme)
    with pytest.raises(TooManyRequests):
        await reg.admit(acme)
    await reg.close()


async def test_quotas_and_daily_budget_reset_at_utc_midnight_and_month_end(make_limits):
    clock = FakeClock()
    reg = registry(make_limits, clock, daily_quota=2, monthly_quota=3, daily_budget_usd=1.0)
    acme = reg.authenticate(None, "k-acme")
    await reg.admit(acme)
    await reg.admit(acme)
    with pytest.raises(TooManyRequests, match="daily quota") as exc:
        await reg.admit(acme)
    assert exc.value.headers["Retry-After"] == "60"  # a minute to midnight
    assert exc.value.headers["X-RateLimit-Limit"] == "2"
    clock.t += 60  # April 1st: a new day and a new month
    await reg.admit(acme)
    await reg.charge(acme, 1.25)
    with pytest.raises(TooManyRequests, match="daily budget"):
        await reg.admit(acme)
    clock.t += 86400  # April 2nd: budget and day quota back, month quota has 2 left
    await reg.admit(acme)
    await reg.admit(acme)
    with pytest.raises(TooManyRequests, match="monthly quota"):
        await reg.admit(acme)
    await reg.close()


async def test_replicas_sharing_redis_share_one_bucket_and_one_quota(redis_url):
    clock = FakeClock()
    replicas = [
        registry(lambda: RedisLimits(redis_url), clock, rate_per_s=10, burst=10, daily_quota=25)
        for _ in range(3)
    ]
    tenants = [r.authenticate(None, "k-acme") for r in replicas]

    async def admitted(count: int) -> int:
        outcomes = await asyncio.gather(
            *(replicas[i % 3].admit(tenants[i % 3]) for i in range(count)), return_exceptions=True
        )
        return sum(not isinstance(o, Exception) for o in outcomes)

    assert await admitted(30) == 10  # one bucket of 10 across three replicas
    clock.t += 1.0
    assert await admitted(30) == 10  # refilled at 10/s: 10 more, shared
    clock.t += 10.0
    assert await admitted(30) == 5  # the day's quota of 25 is shared as well
    for r in replicas:
        await r.close()


async def test_per_process_limits_are_not_shared():
    clock = FakeClock()
    replicas = [registry(LocalLimits, clock, rate_per_s=1, burst=1) for _ in range(2)]
    for r in replicas:  # each replica has its own bucket
        await r.admit(r.authenticate(None, "k-acme"))


async def test_an_unreachable_redis_admits_requests():
    from tests.support.loopback import refusing_port

    with refusing_port() as port:
        reg = registry(
            lambda: RedisLimits(f"redis://127.0.0.1:{port}/0"),
            FakeClock(),
            rate_per_s=1,
            burst=1,
        )
        acme = reg.authenticate(None, "k-acme")
        for _ in range(3):
            await reg.admit(acme)
        assert reg.limits.failures == 3
        await reg.close()


async def test_models_and_route_overrides_a_tenant_may_use():
    reg = registry(LocalLimits, FakeClock(), models=["mlp"])
    acme = reg.authenticate(None, "k-acme")
    await reg.admit(acme, model="mlp")
    with pytest.raises(Forbidden, match="resnet18"):
        await reg.admit(acme, model="resnet18")
    with pytest.raises(Forbidden, match="route"):
        await reg.admit(acme, model="mlp", route_override=True)


def test_a_tenant_reads_only_its_own_usage_unless_admin():
    reg = TenantRegistry(
        [
            TenantSettings(name="a", api_keys=["ka"]),
            TenantSettings(name="b", api_keys=["kb"]),
            TenantSettings(name="ops", api_keys=["kops"], admin=True),
        ]
    )
    a, ops = reg.authenticate(None, "ka"), reg.authenticate(None, "kops")
    assert reg.authorize_usage(a, "a").name == "a"
    with pytest.raises(Forbidden):
        reg.authorize_usage(a, "b")
    with pytest.raises(Forbidden):  # no hint whether a tenant exists
        reg.authorize_usage(a, "nobody")
    assert reg.authorize_usage(ops, "b").name == "b"
    with pytest.raises(NotFound):
        reg.authorize_usage(ops, "nobody")


async def test_restart_restores_quota_and_budget_counters_from_the_ledger(tmp_path):
    import time as _time

    from gateway.ledger import Ledger, LedgerRow

    ledger = Ledger(tmp_path / "l.sqlite")
    await ledger.start()
    now = _time.time()
    for i in range(2):
        await ledger.record(
            LedgerRow(
                id=str(i),
                ts=now,
                tenant="acme",
                model="m",
                path="vm",
                status=200,
                latency_ms=1.0,
                cost_usd=0.3,
            )
        )
    await ledger.close()
    reg = registry(LocalLimits, lambda: now, daily_quota=3)
    await reg.restore(ledger.usage_by_tenant(now))
    acme = reg.authenticate(None, "k-acme")
    await reg.admit(acme)
    with pytest.raises(TooManyRequests, match="daily quota"):
        await reg.admit(acme)


def test_a_key_never_reaches_logs_metrics_or_error_messages(
    model_server, small_repo, tmp_path, caplog
):
    import logging

    import httpx

    from gateway.app import create_app

    from .conftest import serve_app

    caplog.set_level(logging.DEBUG)
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        tenants=[
            {
                "name": "acme",
                "api_keys": ["acme-SECRET-1"],
                "rate_per_s": 1,
                "burst": 1,
                "models": ["mlp"],
            }
        ],
    )
    body = (
        b'{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":['
        + b",".join([b"0"] * 784)
        + b"]}]}"
    )
    image = (
        b'{"inputs":[{"name":"input","shape":[1,3,64,64],"datatype":"FP32","data":['
        + b",".join([b"0"] * 3 * 64 * 64)
        + b"]}]}"
    )
    seen = []
    app = create_app(settings)
    app.state.gateway.tenants.clock = lambda: T0
    with serve_app(app) as url, httpx.Client(base_url=url) as client:
        for headers, path in [
            ({"authorization": "Bearer acme-SECRET-1"}, "mlp"),  # 200
            ({"authorization": "Bearer acme-SECRET-1"}, "mlp"),  # 429
            ({"x-api-key": "acme-SECRET-1"}, "resnet18"),  # 403: not its model
            ({"authorization": "Bearer acme-SECRET-1", "x-tidegate-route": "burst"}, "mlp"),
            ({"authorization": "Bearer guess-SECRET-2"}, "mlp"),  # 401
            ({"authorization": "Basic guess-SECRET-3"}, "mlp"),  # 401
        ]:
            resp = client.post(
                f"/v2/models/{path}/infer",
                headers=headers,
                content=image if path == "resnet18" else body,
            )
            seen.append((resp.status_code, resp.text, str(resp.headers)))
        seen.append((0, client.get("/metrics").text, ""))
    assert [s[0] for s in seen[:6]] == [200, 429, 403, 403, 401, 401]
    assert 'tenant="acme"' in seen[-1][1]  # the metrics are there, by tenant name
    leaks = [s for s in seen if "SECRET" in s[1] + s[2]]
    leaks += [r.getMessage() for r in caplog.records if "SECRET" in r.getMessage()]
    assert not leaks


async def test_an_unreachable_redis_is_said_at_start_not_at_the_first_request(caplog, redis_url):
    """A gateway started with Redis down logged nothing until a request came (readiness 200,
    limits open): restore (start-up) says it. A Redis that answers says nothing."""
    import logging

    from tests.support.loopback import refusing_port

    with refusing_port() as port, caplog.at_level(logging.WARNING, "tidegate.tenants"):
        down = registry(lambda: RedisLimits(f"redis://127.0.0.1:{port}/0"), FakeClock())
        await down.restore({})
        assert down.limits.failures == 1
        assert "shared limits unavailable (admitting requests)" in caplog.text
        await down.close()
    caplog.clear()
    up = registry(lambda: RedisLimits(redis_url), FakeClock())
    await up.restore({})
    assert up.limits.failures == 0 and "unavailable" not in caplog.text
    await up.close()
