"""Typed function-platform settings: one model per ``kind`` (a pydantic discriminated union).

``make_invoker`` still takes plain dicts (functions read their own environment); the gateway's
settings validate the ``[burst.platform]`` table with these models first, so a typo in a key or
a kind is one clear error at start instead of a traceback later.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from policies.config_table import ConfigTable


class _Platform(ConfigTable):
    def as_config(self) -> dict:
        """The plain dict ``burst.faas.factory.make_invoker`` takes (unset optionals left out)."""
        return self.model_dump(exclude_none=True)


class LocalPlatform(_Platform):
    kind: Literal["local"] = Field("local", description="The embedded local function runtime.")
    endpoint: str | None = Field(
        None,
        description="URL of a running local function runtime; empty: the gateway starts its own.",
    )
    timeout_s: float = Field(900.0, gt=0, description="Timeout of one invocation.")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value or None, "endpoint")


def _http_url(value: str | None, what: str) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"{what} {value!r} is not an http:// or https:// URL")
    return value


class AwsLambdaPlatform(_Platform):
    kind: Literal["aws_lambda"] = Field(description="AWS Lambda through aioboto3.")
    region: str = Field("us-east-1", min_length=1, description="AWS region of the functions.")
    endpoint_url: str | None = Field(None, description="Override the Lambda endpoint (testing).")
    aws_access_key_id: str | None = Field(
        None,
        description="Access key; default: the usual AWS credential chain (env, profile, role).",
    )
    aws_secret_access_key: str | None = Field(None, description="Secret key for the access key.")
    qualifier: str | None = Field(None, description="Function version or alias to invoke.")
    max_pool_connections: int = Field(64, ge=1, description="HTTP connections to Lambda.")
    timeout_s: float = Field(900.0, gt=0, description="Timeout of one invocation.")
    throttle_retries: int = Field(4, ge=0, description="Retries of a throttled invocation.")
    throttle_backoff_max_s: float = Field(2.0, gt=0, description="Largest backoff between them.")


class AlibabaFcPlatform(_Platform):
    kind: Literal["alibaba_fc"] = Field(description="Alibaba Cloud Function Compute 3.0.")
    endpoint: str = Field(
        description="Account endpoint, e.g. https://<uid>.cn-hangzhou.fc.aliyuncs.com."
    )
    access_key_id: str = Field(min_length=1, description="AccessKey ID.")
    access_key_secret: str = Field(min_length=1, description="AccessKey secret.")
    qualifier: str = Field("LATEST", description="Function version or alias to invoke.")
    security_token: str | None = Field(None, description="STS token for temporary credentials.")
    timeout_s: float = Field(900.0, gt=0, description="Timeout of one invocation.")
    max_connections: int = Field(64, ge=1, description="HTTP connections to Function Compute.")
    throttle_retries: int = Field(4, ge=0, description="Retries of a throttled invocation.")
    throttle_backoff_s: float = Field(0.1, gt=0, description="First backoff between them.")
    memory_mb: int = Field(0, ge=0, description="Memory size to bill when the log tail omits it.")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return str(_http_url(value, "endpoint"))


PlatformSettings = Annotated[
    Union[LocalPlatform, AwsLambdaPlatform, AlibabaFcPlatform], Field(discriminator="kind")
]
