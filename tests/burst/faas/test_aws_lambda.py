"""LambdaInvoker (aioboto3, SigV4-signed) against the local runtime, next to LocalInvoker."""

import asyncio
import math

import orjson
import pytest
from botocore.exceptions import ClientError

from burst.faas.aws_lambda import LambdaInvoker
from burst.faas.base import InvokeError
from burst.faas.factory import make_invoker
from burst.faas.lambda_wire import parse_report
from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime

H = "tests.burst.faas.handlers"


@pytest.fixture(scope="module")
def runtime():
    """One runtime for the module, on its own thread and event loop."""
    rt = LocalFunctionRuntime(
        concurrency=8,
        functions=[
            FunctionSpec("echo", f"{H}:echo", memory_mb=256),
            FunctionSpec("echo_cold", f"{H}:echo"),
            FunctionSpec("fail", f"{H}:fail"),
            FunctionSpec("slow", f"{H}:sleep", timeout_s=0.5),
            FunctionSpec("hog", f"{H}:hog", memory_mb=128),
            FunctionSpec("gate", f"{H}:gate", reserved_concurrency=1, timeout_s=120),
        ],
        max_payload_bytes=4096,
    )
    rt.start_in_thread()
    yield rt
    rt.stop_thread()


@pytest.fixture
async def invokers(runtime):
    aws = LambdaInvoker(
        endpoint_url=runtime.endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
        throttle_retries=0,
    )
    local = LocalInvoker(runtime.endpoint)
    yield aws, local
    await aws.close()
    await local.close()


async def test_lambda_invoker_matches_local_invoker(invokers):
    aws, local = invokers
    cold = await aws.invoke("echo_cold", b'{"n": 0}')
    assert cold.billing.cold_start and cold.billing.init_ms > 0
    via_aws = await aws.invoke("echo", b'{"n": 1}')
    via_local = await local.invoke("echo", b'{"n": 1}')
    a, b = orjson.loads(via_aws.payload), orjson.loads(via_local.payload)
    assert a["event"] == b["event"] == {"n": 1} and a["pid"] == b["pid"]  # same warm instance
    for r in (via_aws, via_local):
        assert r.billing.memory_mb == 256 and r.billing.billed_ms == math.ceil(
            r.billing.duration_ms
        )
        assert r.billing.max_memory_used_mb > 0
    assert not via_local.billing.cold_start


async def test_runtime_accepts_sigv4_signed_requests(invokers):
    aws, _ = invokers
    client = await aws._get_client()
    seen = []
    client.meta.events.register(
        "before-send.lambda.Invoke", lambda request, **_: seen.append(request.headers)
    )
    await aws.invoke("echo", b"{}")
    assert seen and seen[0]["Authorization"].startswith(b"AWS4-HMAC-SHA256")


@pytest.mark.parametrize(
    "function, payload, kind",
    [
        ("fail", b'{"why": "x"}', "FunctionError"),
        ("slow", b'{"sleep_s": 5}', "Timeout"),
        ("hog", b'{"mb": 300}', "OutOfMemory"),
        ("missing", b"{}", "NotFound"),
        ("echo", b'{"a": "' + b"x" * 5000 + b'"}', "PayloadTooLarge"),
    ],
)
async def test_error_mapping_is_the_same_for_both_invokers(invokers, function, payload, kind):
    messages = []
    for invoker in invokers:
        with pytest.raises(InvokeError) as err:
            await invoker.invoke(function, payload)
        assert err.value.kind == kind
        messages.append(str(err.value).split(":")[1])
    assert messages[0] == messages[1]  # same errorType / error code either way


async def test_throttling_is_retried_until_capacity_frees(runtime, tmp_path):
    aws = LambdaInvoker(
        endpoint_url=runtime.endpoint,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        throttle_retries=30,
        throttle_backoff_max_s=0.3,
    )
    no_retry = LambdaInvoker(
        endpoint_url=runtime.endpoint,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        throttle_retries=0,
    )

    def gate_event(name):
        return orjson.dumps(
            {
                "started": str(tmp_path / f"{name}.started"),
                "release": str(tmp_path / f"{name}.release"),
            }
        )

    try:
        before = len(runtime.billing("gate"))
        busy = asyncio.create_task(aws.invoke("gate", gate_event("a")))
        while not (tmp_path / "a.started").exists():
            await asyncio.sleep(0.005)
        with pytest.raises(InvokeError) as err:
            await no_retry.invoke("gate", gate_event("b"))
        assert err.value.kind == "Throttled"
        (tmp_path / "b.release").touch()
        second = asyncio.create_task(aws.invoke("gate", gate_event("b")))  # retried
        (tmp_path / "a.release").touch()
        await busy
        assert orjson.loads((await second).payload)["pid"] > 0
        assert len(runtime.billing("gate")) == before + 2  # throttled attempts never ran
    finally:
        await aws.close()
        await no_retry.close()


async def test_function_errors_are_never_retried(runtime):
    aws = LambdaInvoker(
        endpoint_url=runtime.endpoint,
        aws_access_key_id="a",
        aws_secret_access_key="b",
        throttle_retries=5,
    )
    try:
        before = len(runtime.billing("fail"))
        with pytest.raises(InvokeError) as err:
            await aws.invoke("fail", b"{}")
        assert err.value.kind == "FunctionError" and err.value.billing.billed_ms >= 1
        assert len(runtime.billing("fail")) == before + 1
    finally:
        await aws.close()


async def test_botocore_parses_function_management_responses(invokers, runtime):
    aws, _ = invokers
    client = await aws._get_client()
    created = await client.create_function(
        FunctionName="boto_made",
        Runtime="python3.11",
        Role="arn:aws:iam::0:role/x",
        Handler=f"{H}:echo",
        Code={"ZipFile": b"unused"},
        MemorySize=160,
        Timeout=7,
        Environment={"Variables": {"GREETING": "boto"}},
    )
    assert created["MemorySize"] == 160 and created["Timeout"] == 7
    await client.put_function_concurrency(FunctionName="boto_made", ReservedConcurrentExecutions=2)
    got = await client.get_function(FunctionName="boto_made")
    assert got["Configuration"]["Handler"] == f"{H}:echo"
    assert got["Concurrency"]["ReservedConcurrentExecutions"] == 2
    result = orjson.loads((await aws.invoke("boto_made", b"{}")).payload)
    assert result["greeting"] == "boto" and result["memory_mb"] == 160
    await client.delete_function(FunctionName="boto_made")
    with pytest.raises(ClientError) as err:
        await client.get_function(FunctionName="boto_made")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_report_line_parsing_accepts_lambdas_spacing():
    billing = parse_report(
        "START RequestId: 1 Version: $LATEST\nEND RequestId: 1\n"
        "REPORT RequestId: 1 Duration: 12.34 ms Billed Duration: 13 ms Memory Size: 512 MB "
        "Max Memory Used: 301 MB Init Duration: 950.12 ms\n"
    )
    assert (
        billing.duration_ms,
        billing.billed_ms,
        billing.memory_mb,
        billing.max_memory_used_mb,
        billing.cold_start,
        billing.init_ms,
    ) == (12.34, 13, 512, 301, True, 950.12)
    warm = parse_report(
        "REPORT RequestId: 2\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 20 MB\t"
    )
    assert not warm.cold_start and warm.init_ms == 0 and warm.duration_ms == 1.0


async def test_factory_builds_invokers_and_rejects_bad_config():
    local = make_invoker({"kind": "local", "endpoint": "http://127.0.0.1:9", "timeout_s": 5})
    aws = make_invoker(
        {
            "kind": "aws_lambda",
            "region": "eu-west-1",
            "aws_access_key_id": "a",
            "aws_secret_access_key": "b",
        }
    )
    assert isinstance(local, LocalInvoker) and local.timeout_s == 5
    assert isinstance(aws, LambdaInvoker) and aws.region == "eu-west-1"
    with pytest.raises(InvokeError) as err:  # nothing listens there
        await local.invoke("f", b"{}")
    assert err.value.kind == "Transport"
    await local.close()
    await aws.close()
    with pytest.raises(ValueError, match="aws_lambda"):
        make_invoker({"kind": "gcp"})
    with pytest.raises(ValueError, match="regoin"):
        make_invoker({"kind": "aws_lambda", "regoin": "x"})
    with pytest.raises(ValueError, match="endpoint"):
        make_invoker({"kind": "local"})
