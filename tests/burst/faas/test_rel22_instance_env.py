"""A function instance's environment is its function's configuration and what the interpreter
needs: not the gateway's settings and credentials (before, every instance inherited the whole
runtime environment: a ledger URL with its password, the admin key, cloud keys)."""

from __future__ import annotations

import json
import os

import orjson
import pytest

from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime

HANDLER = "tests.burst.faas.test_rel22_instance_env:environment"
GATEWAY_SECRETS = {
    "TIDEGATE_ADMIN_KEY": "SECRET-admin",
    "TIDEGATE_LEDGER__URL": "postgresql://tidegate:SECRET-pg@db/tidegate",
    "TIDEGATE_REDIS_URL": "redis://:SECRET-redis@cache:6379/0",
    "AWS_SECRET_ACCESS_KEY": "SECRET-aws",
}


def environment(event, context):
    return dict(os.environ)


@pytest.fixture
async def instance_env(monkeypatch):
    """The environment an instance of a function configured with ``environment`` sees."""
    for name, value in GATEWAY_SECRETS.items():
        monkeypatch.setenv(name, value)
    started = []

    async def seen(environment: dict[str, str]) -> dict[str, str]:
        runtime = LocalFunctionRuntime(
            functions=[FunctionSpec("f", HANDLER, memory_mb=256, environment=environment)]
        )
        await runtime.start()
        invoker = LocalInvoker(runtime.endpoint)
        started.append((runtime, invoker))
        return orjson.loads((await invoker.invoke("f", b"{}")).payload)

    yield seen
    for runtime, invoker in started:
        await invoker.close()
        await runtime.stop()


async def test_no_gateway_setting_or_credential_reaches_an_instance(instance_env):
    store = {"kind": "dir", "root": "/tmp/store", "weights_grace_h": 24.0}
    env = await instance_env({"TIDEGATE_BURST_STORE": json.dumps(store), "GREETING": "hi"})
    assert env["GREETING"] == "hi" and json.loads(env["TIDEGATE_BURST_STORE"]) == store
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "f" and "PATH" in env
    assert not [k for k, v in env.items() if "SECRET" in v], sorted(env)


async def test_an_s3_store_without_keys_gets_the_aws_credentials_it_needs_and_no_more(
    instance_env,
):
    keyless = {"kind": "s3", "bucket": "b"}
    env = await instance_env({"TIDEGATE_BURST_STORE": json.dumps(keyless)})
    assert env["AWS_SECRET_ACCESS_KEY"] == "SECRET-aws"  # its only way to its bucket
    assert [k for k, v in env.items() if "SECRET" in v] == ["AWS_SECRET_ACCESS_KEY"]
    keyed = {"kind": "s3", "bucket": "b", "aws_access_key_id": "AK", "aws_secret_access_key": "S"}
    env = await instance_env({"TIDEGATE_BURST_STORE": json.dumps(keyed)})
    assert not [k for k, v in env.items() if "SECRET" in v]
