import pytest

from gateway.errors import Forbidden, TooManyRequests, Unauthorized
from gateway.settings import TenantSettings
from gateway.tenants import TenantRegistry


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_open_registry_needs_no_key_and_may_force_routes():
    reg = TenantRegistry([])
    tenant = reg.authenticate(None, None)
    assert tenant.name == "default"
    reg.admit(tenant, route_override=True)


def test_keys_bearer_and_header():
    reg = TenantRegistry([TenantSettings(name="a", api_keys=["ka"]),
                          TenantSettings(name="b", api_keys=["kb"])])
    assert reg.authenticate("Bearer ka", None).name == "a"
    assert reg.authenticate(None, "kb").name == "b"
    for auth, key in [(None, None), ("Bearer nope", None), ("Basic ka", None), (None, "x")]:
        with pytest.raises(Unauthorized):
            reg.authenticate(auth, key)


def test_token_bucket_limits_and_refills():
    clock = FakeClock()
    reg = TenantRegistry([TenantSettings(name="a", api_keys=["k"], rate_per_s=2, burst=2)],
                         clock=clock)
    t = reg.authenticate(None, "k")
    reg.admit(t, route_override=False)
    reg.admit(t, route_override=False)
    with pytest.raises(TooManyRequests) as exc:
        reg.admit(t, route_override=False)
    assert exc.value.headers["Retry-After"] == "1"
    clock.t += 0.5  # one token back at 2/s
    reg.admit(t, route_override=False)


def test_quota_budget_and_route_override_permission():
    reg = TenantRegistry([TenantSettings(name="a", api_keys=["k"], daily_quota=1, budget_usd=1.0)])
    t = reg.authenticate(None, "k")
    with pytest.raises(Forbidden):
        reg.admit(t, route_override=True)
    reg.admit(t, route_override=False)
    with pytest.raises(TooManyRequests, match="daily quota"):
        reg.admit(t, route_override=False)
    t.requests_today = 0
    reg.charge(t, 1.5)
    with pytest.raises(TooManyRequests, match="budget"):
        reg.admit(t, route_override=False)
