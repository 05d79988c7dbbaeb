"""AlibabaFCInvoker against a loopback FC 3.0 endpoint that checks the wire and the V3 signature."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from burst.faas.alibaba_fc import AlibabaFCInvoker
from burst.faas.base import InvokeError
from tests.support.fc_server import (  # noqa: F401  (fixtures)
    FC_TEST_CREDENTIALS,
    FakeFunction,
    FunctionFailed,
    fc_server,
    fc_server_session,
)

((ACCESS_KEY_ID, ACCESS_KEY_SECRET),) = FC_TEST_CREDENTIALS.items()


@pytest.fixture
async def invoker(fc_server):
    inv = AlibabaFCInvoker(
        endpoint=fc_server.endpoint,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=ACCESS_KEY_SECRET,
        throttle_backoff_s=0.001,
    )
    yield inv
    await inv.close()


def _echo_upper(payload: bytes) -> bytes:
    return payload.upper()


async def test_sync_invoke_returns_payload_and_billing_from_log_tail(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper, memory_mb=1024)
    result = await invoker.invoke("tg-worker", b"hello fc")
    assert result.payload == b"HELLO FC"
    assert result.billing.memory_mb == 1024
    assert result.billing.cold_start and result.billing.init_ms == 250.0
    assert result.billing.billed_ms >= 1 and result.billing.billed_ms >= result.billing.duration_ms
    assert result.billing.max_memory_used_mb == 22  # 21.37 MB rounded up
    warm = await invoker.invoke("tg-worker", b"again")
    assert warm.payload == b"AGAIN" and not warm.billing.cold_start


async def test_wire_format_matches_invoke_function_api(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper, qualifiers={"LATEST", "prod"})
    await invoker.invoke("tg-worker", b"\x00\x01binary")
    req = fc_server.requests[-1]
    assert req["method"] == "POST"
    assert req["path"] == "/2023-03-30/functions/tg-worker/invocations"
    assert req["query"] == {"qualifier": "LATEST"}
    h = req["headers"]
    assert h["x-fc-invocation-type"] == "Sync" and h["x-fc-log-type"] == "Tail"
    assert h["x-acs-action"] == "InvokeFunction" and h["x-acs-version"] == "2023-03-30"
    assert h["authorization"].startswith(
        f"ACS3-HMAC-SHA256 Credential={ACCESS_KEY_ID},SignedHeaders="
    )
    prod = AlibabaFCInvoker(
        endpoint=fc_server.endpoint,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=ACCESS_KEY_SECRET,
        qualifier="prod",
    )
    try:
        assert (await prod.invoke("tg-worker", b"q")).payload == b"Q"
        assert fc_server.requests[-1]["query"] == {"qualifier": "prod"}
    finally:
        await prod.close()


async def test_wrong_secret_is_rejected_with_fc_error_json(fc_server):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    bad = AlibabaFCInvoker(
        endpoint=fc_server.endpoint, access_key_id=ACCESS_KEY_ID, access_key_secret="not-the-secret"
    )
    try:
        with pytest.raises(InvokeError) as info:
            await bad.invoke("tg-worker", b"x")
    finally:
        await bad.close()
    assert info.value.kind == "AccessDenied"
    assert "HTTP 403 SignatureDoesNotMatch" in str(info.value)


async def test_security_token_is_sent_and_signed(fc_server):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    sts = AlibabaFCInvoker(
        endpoint=fc_server.endpoint,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=ACCESS_KEY_SECRET,
        security_token="sts-token-123",
    )
    try:
        assert (await sts.invoke("tg-worker", b"s")).payload == b"S"
    finally:
        await sts.close()
    h = fc_server.requests[-1]["headers"]
    assert h["x-acs-security-token"] == "sts-token-123"
    assert "x-acs-security-token" in h["authorization"]


async def test_function_error_maps_to_function_error_with_billing(fc_server, invoker):
    def boom(payload: bytes) -> bytes:
        raise FunctionFailed("division by zero")

    fc_server.functions["tg-bad"] = FakeFunction(boom)
    with pytest.raises(InvokeError) as info:
        await invoker.invoke("tg-bad", b"{}")
    assert info.value.kind == "FunctionError"
    assert "UnhandledInvocationError" in str(info.value) and "division by zero" in str(info.value)
    assert info.value.billing is not None and info.value.billing.billed_ms >= 1


async def test_function_timeout_is_reported_as_timeout(fc_server, invoker):
    def slow(payload: bytes) -> bytes:
        raise FunctionFailed("Function timed out after 3 seconds")

    fc_server.functions["tg-slow"] = FakeFunction(slow)
    with pytest.raises(InvokeError) as info:
        await invoker.invoke("tg-slow", b"")
    assert info.value.kind == "Timeout"


async def test_missing_function_and_alias_are_not_found(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    with pytest.raises(InvokeError) as info:
        await invoker.invoke("tg-nope", b"")
    assert info.value.kind == "NotFound" and "FunctionNotFound" in str(info.value)
    staging = AlibabaFCInvoker(
        endpoint=fc_server.endpoint,
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=ACCESS_KEY_SECRET,
        qualifier="staging",
    )
    try:
        with pytest.raises(InvokeError) as info:
            await staging.invoke("tg-worker", b"")
    finally:
        await staging.close()
    assert info.value.kind == "NotFound"


async def test_throttling_is_retried_then_succeeds(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    fc_server.throttle_next = 2
    assert (await invoker.invoke("tg-worker", b"t")).payload == b"T"
    assert len(fc_server.requests) == 3  # two 429s, then the success; each freshly signed


async def test_persistent_throttling_surfaces_as_throttled(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    fc_server.throttle_next = 100
    with pytest.raises(InvokeError) as info:
        await invoker.invoke("tg-worker", b"t")
    assert info.value.kind == "Throttled"
    assert len(fc_server.requests) == invoker.throttle_retries + 1


async def test_function_errors_are_not_retried(fc_server, invoker):
    calls = []

    def flaky(payload: bytes) -> bytes:
        calls.append(1)
        raise FunctionFailed("bad input")

    fc_server.functions["tg-flaky"] = FakeFunction(flaky)
    with pytest.raises(InvokeError):
        await invoker.invoke("tg-flaky", b"")
    assert len(calls) == 1


async def test_unreachable_endpoint_is_transport_error():
    inv = AlibabaFCInvoker(
        endpoint="http://127.0.0.1:9",
        access_key_id=ACCESS_KEY_ID,
        access_key_secret=ACCESS_KEY_SECRET,
        timeout_s=2,
    )
    try:
        with pytest.raises(InvokeError) as info:
            await inv.invoke("tg-worker", b"")
    finally:
        await inv.close()
    assert info.value.kind == "Transport"


async def test_concurrent_invocations_share_the_pool(fc_server, invoker):
    fc_server.functions["tg-worker"] = FakeFunction(lambda p: json.dumps({"n": int(p)}).encode())
    results = await asyncio.gather(
        *(invoker.invoke("tg-worker", str(i).encode()) for i in range(32))
    )
    assert [json.loads(r.payload)["n"] for r in results] == list(range(32))


async def test_bad_function_name_and_config_are_rejected(fc_server, invoker):
    with pytest.raises(ValueError, match="invalid FC function name"):
        await invoker.invoke("../etc/passwd", b"")
    assert fc_server.requests == []
    with pytest.raises(ValueError, match="access_key_secret"):
        AlibabaFCInvoker.from_config({"endpoint": "fc.example.com", "access_key_id": "a"})


def test_from_config_builds_an_https_invoker_by_default():
    inv = AlibabaFCInvoker.from_config(
        {
            "endpoint": "123.cn-hangzhou.fc.aliyuncs.com",
            "access_key_id": "a",
            "access_key_secret": "b",
            "qualifier": "prod",
            "unknown": 1,
        }
    )
    path, headers = inv.signed_headers("f", b"")
    assert inv.qualifier == "prod" and headers["host"] == "123.cn-hangzhou.fc.aliyuncs.com"
    assert inv._base_url == "https://123.cn-hangzhou.fc.aliyuncs.com"
    asyncio.run(inv.close())


def test_log_tail_round_trip_is_base64():
    # Guards the assumption the invoker makes about x-fc-log-result's encoding.
    from burst.faas.alibaba_fc import parse_log_billing

    tail = base64.b64encode(
        b"FC Invoke End RequestId: r, Duration: 3.20 ms, Billed Duration: 4 ms"
    ).decode()
    figures = parse_log_billing(base64.b64decode(tail).decode())
    assert figures == {"duration_ms": 3.2, "billed_ms": 4.0}


async def test_body_changed_after_signing_is_rejected(fc_server, invoker):
    import httpx

    fc_server.functions["tg-worker"] = FakeFunction(_echo_upper)
    path, headers = invoker.signed_headers("tg-worker", b"original")
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            fc_server.endpoint + path,
            params={"qualifier": "LATEST"},
            content=b"tampered",
            headers=headers,
        )
    assert resp.status_code == 400 and resp.json()["Code"] == "InvalidContentSHA256"
