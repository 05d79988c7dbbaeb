"""Property-based fuzz of the admin API on a real gateway and model server on loopback.

``PUT /admin/policy`` gets random JSON, the right keys with wrong types, huge and non-finite
numbers, unknown keys, other content types and other keys' credentials; ``GET
/admin/reports/tenants/{tenant}`` odd tenants, times, groupings and keys. A refusal is a 4xx
with ``{"error": ...}`` and leaves the policy as ``GET`` showed it; an accepted change is what
``GET`` shows after, it can be put back as it reads, and the gateway still answers. Never a 5xx,
never a failure in the log. (``FUZZ_EXAMPLES``: see fuzz_support.py.)
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app
from .fuzz_support import JSON_VALUES, NUMBERS, dumps, fuzz_settings, logged_failures

ADMIN, KEY_A, KEY_B = "adm-key", "key-a", "key-b"
AS_ADMIN = {"x-api-key": ADMIN}
ROUTING = ["vm-only", "burst-only", "threshold", "slo-aware"]
ROUTING_PARAMS = ["spill_outstanding_per_replica", "slo_margin", "budget_quantile"]
ROUTING_PARAMS += ["budget_spend", "budget_window_s", "prices", "name"]
SCALERS = ["none", "target", "knative", "predictive", "queue"]
SCALER_FIELDS = ["min_replicas", "max_replicas", "tick_s", "target_in_flight_per_replica"]
SCALER_FIELDS += ["target_rps_per_replica", "metric_window_s", "scale_in_cooldown_s"]
SCALER_FIELDS += ["stable_window_s", "panic_window_s", "panic_threshold", "max_scale_up_rate"]
SCALER_FIELDS += ["base_quantile", "warm_quantile", "max_warm_functions", "burst_latency_s"]
SCALER_FIELDS += ["spill_window_s", "duration_aware", "target_per_replica", "activation_depth"]
SCALER_FIELDS += ["cooldown_s", "warm_functions", "instances_per_burst_request"]
X = np.zeros((1, 784), np.float32).ravel().tolist()
INFER = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": X}]}


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(base URL, log failures, its state) of a gateway with an admin key and two tenants."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("fuzz-admin"),
        repo=small_repo,
        grpc_port=-1,
        admin_api_key=ADMIN,
        tenants=[
            {"name": "a", "api_keys": [KEY_A]},
            {"name": "b", "api_keys": [KEY_B], "admin": True},
        ],
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with logged_failures() as failures, serve_app(app) as url:
        yield url, failures, app.state.gateway


def control_tick(state) -> None:
    """One tick of the control loop now, on the gateway's event loop (what the policy asks
    for is then driven, as it will be every ``tick_s``): its error, if any, raised here."""
    engine = state.require_dispatcher().engine
    loop = engine._task.get_loop()  # (the loop uvicorn runs the gateway on, in its thread)
    asyncio.run_coroutine_threadsafe(engine.tick(), loop).result(30)


def odd(values: list) -> st.SearchStrategy:
    """One of ``values``, or anything JSON holds."""
    return st.one_of(st.sampled_from(values), JSON_VALUES)


@st.composite
def policy_bodies(draw):
    """A PUT /admin/policy body: mostly the right shape with some wrong values, else anything."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON_VALUES)
    body: dict = {}
    if draw(st.booleans()):
        body["routing_policy"] = draw(odd(ROUTING))
    if draw(st.booleans()):
        names = st.one_of(st.sampled_from(ROUTING_PARAMS), st.text(max_size=8))
        values = st.one_of(NUMBERS, JSON_VALUES)
        body["routing_params"] = draw(
            st.one_of(st.dictionaries(names, values, max_size=2), JSON_VALUES)
        )
    if draw(st.booleans()):
        table = {"policy": draw(odd(SCALERS))} if draw(st.integers(0, 5)) else {}
        fields = st.one_of(st.sampled_from(SCALER_FIELDS), st.text(max_size=8))
        table |= draw(st.dictionaries(fields, st.one_of(NUMBERS, JSON_VALUES), max_size=3))
        body["autoscaling"] = table
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return body


def assert_refusal(resp: httpx.Response) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    error = resp.json()["error"]
    assert isinstance(error, str) and error.strip()
    assert "internal error" not in error and "Traceback" not in error


KEYS = st.sampled_from([AS_ADMIN, AS_ADMIN, AS_ADMIN, {}, {"x-api-key": KEY_A}])
KEYS |= st.sampled_from([{"authorization": "Bearer " + ADMIN}, {"authorization": "Bearer x"}])
KINDS = st.sampled_from(["application/json"] * 6 + ["text/plain", "", "application/x-www-form"])


@given(body=policy_bodies(), headers=KEYS, kind=KINDS)
@fuzz_settings(120)
@example(body={"autoscaling": {"policy": "target", "tick_s": 1e-300}}, headers=AS_ADMIN, kind="")
# (make_policy's own argument: "got multiple values for argument 'name'", a 500)
@example(body={"routing_params": {"name": "x"}}, headers=AS_ADMIN, kind="")
def test_policy_changes_are_applied_whole_or_refused_with_nothing_changed(
    gateway, body, headers, kind
):
    url, failures, state = gateway
    with httpx.Client(base_url=url, timeout=30) as c:
        before = c.get("/admin/policy", headers=AS_ADMIN).json()
        put = c.put(
            "/admin/policy",
            content=dumps(body),
            headers={**headers, **({"content-type": kind} if kind else {})},
        )
        after = c.get("/admin/policy", headers=AS_ADMIN)
        event(f"PUT {put.status_code}")
        assert after.status_code == 200, after.text
        if put.status_code != 200:
            assert_refusal(put)
            assert after.json() == before
        else:
            assert put.json() == after.json()
            again = c.put("/admin/policy", json=after.json(), headers=AS_ADMIN)
            assert again.status_code == 200 and again.json() == after.json(), again.text
            control_tick(state)
            answer = c.post("/v2/models/mlp/infer", json=INFER, headers={"x-api-key": KEY_A})
            assert answer.status_code in (200, 503), answer.text  # (burst-only: no functions)
            assert "error" in answer.json() or answer.status_code == 200
    failures.assert_none()


TENANTS = st.one_of(
    st.sampled_from(["a", "b", "nobody", "A", "a%2Fb", "..", "%00"]), st.text(min_size=1)
)
TIMES = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "-1", "nan", "inf", "1e400", "2026-01-01", "2026-13-45", "now"]),
    st.sampled_from(["1780000000", "2026-01-01T00:00:00+25:00", "9" * 40, "-" + "9" * 400]),
    st.text(max_size=16),
)
GROUPINGS = st.one_of(
    st.none(), st.sampled_from(["", "model", "path,day", "model,model", "colour", ","]), st.text()
)
REPORT_KEYS = st.sampled_from(
    [AS_ADMIN, {"x-api-key": KEY_A}, {"x-api-key": KEY_B}, {}, {"x-api-key": "x"}]
)


@given(tenant=TENANTS, since=TIMES, until=TIMES, by=GROUPINGS, headers=REPORT_KEYS)
@fuzz_settings(100)
@example(tenant="a", since="1e400", until=None, by=None, headers=AS_ADMIN)
def test_tenant_reports_answer_or_refuse_clearly(gateway, tenant, since, until, by, headers):
    url, failures, _ = gateway
    params = {k: v for k, v in (("since", since), ("until", until), ("by", by)) if v is not None}
    with httpx.Client(base_url=url, timeout=30) as c:
        path = "/admin/reports/tenants/" + quote(tenant, safe="").replace(".", "%2E")
        resp = c.get(path, params=params, headers=headers)
        event(f"GET {resp.status_code}")
    if resp.status_code == 200:
        doc = resp.json()
        assert doc["tenant"] == tenant and tenant in doc["tenants"]
    else:  # ("a/" is another path, HTTP servers decode %2F: a 404, not a 307 to "a")
        assert_refusal(resp)
    failures.assert_none()


CREDENTIAL = st.one_of(
    # (what an HTTP header value may hold: no control characters, which the parser refuses)
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip()),
    st.sampled_from([b"Bearer", b"bearer  " + ADMIN.encode(), b"Basic " + b"x" * 8000]),
    st.sampled_from([b"Bearer " + ADMIN.encode() + b"\xff", ADMIN.encode().upper()]),
)
PLACES = ["/admin/policy", "/admin/paths", "/admin/reports/tenants/a", "/v2/models/mlp/infer"]


@given(
    place=st.sampled_from(PLACES),
    header=st.sampled_from(["authorization", "x-api-key"]),
    value=CREDENTIAL,
)
@fuzz_settings(60)
def test_odd_credentials_are_refused_clearly(gateway, place, header, value):
    url, failures, _ = gateway
    method = "POST" if place.endswith("/infer") else "GET"
    with httpx.Client(base_url=url, timeout=30) as c:
        before = c.get("/admin/policy", headers=AS_ADMIN).json()
        resp = c.request(method, place, json=INFER, headers=[(header.encode(), value)])
        assert c.get("/admin/policy", headers=AS_ADMIN).json() == before
    event(f"{place} {resp.status_code}")
    if resp.status_code != 200:  # (an empty x-api-key is no key: an open-loopback path)
        assert resp.status_code in (401, 403), resp.text
        assert_refusal(resp)
    failures.assert_none()
