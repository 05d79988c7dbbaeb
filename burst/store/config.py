"""Typed tensor-store settings: one model per ``kind`` (a pydantic discriminated union).

``make_store`` still takes plain dicts; the gateway's settings validate ``[burst.store]`` with
these models first, so a typo is one clear error at start.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from policies.config_table import ConfigTable


class _Store(ConfigTable):
    encrypt: bool | None = Field(
        None,
        description="Seal per-request tensors with AES-GCM under "
        "a key that travels only in the invocations; default: on for "
        "s3, oss and sqs, off for dir and memory.",
    )

    def as_config(self) -> dict:
        """The plain dict ``burst.store.factory.make_store`` takes (unset optionals left out)."""
        return self.model_dump(exclude_none=True)


class DirStore(_Store):
    kind: Literal["dir"] = Field("dir", description="A local directory (the embedded default).")
    root: str | None = Field(
        None, min_length=1, description="Directory of the objects; default DATA_DIR/objects."
    )


class MemoryStore(_Store):
    kind: Literal["memory"] = Field(description="In-process memory (tests, one process only).")


class S3Store(_Store):
    kind: Literal["s3"] = Field(description="Amazon S3 or an S3-compatible server, via aioboto3.")
    bucket: str = Field(min_length=1, description="Bucket holding intermediate tensors.")
    prefix: str = Field("", description="Key prefix inside the bucket.")
    region: str = Field("us-east-1", description="Bucket region.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, testing).")
    aws_access_key_id: str | None = Field(
        None, description="Access key; default: the usual AWS credential chain."
    )
    aws_secret_access_key: str | None = Field(None, description="Secret key for the access key.")
    max_pool_connections: int | None = Field(None, ge=1, description="HTTP connections to S3.")
    max_attempts: int | None = Field(None, ge=1, description="Attempts per S3 call (retries).")
    connect_timeout_s: float | None = Field(None, gt=0, description="Connect timeout (3 s).")
    read_timeout_s: float | None = Field(None, gt=0, description="Read timeout (60 s).")


class OssStore(_Store):
    kind: Literal["oss"] = Field(description="Alibaba Cloud OSS via oss2.")
    bucket: str = Field(min_length=1, description="Bucket holding intermediate tensors.")
    endpoint: str = Field(
        min_length=1, description="OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com."
    )
    access_key_id: str = Field(min_length=1, description="AccessKey ID.")
    access_key_secret: str = Field(min_length=1, description="AccessKey secret.")
    prefix: str = Field("", description="Key prefix inside the bucket.")
    security_token: str | None = Field(None, description="STS token for temporary credentials.")
    max_threads: int | None = Field(None, ge=1, description="Threads for blocking oss2 calls.")
    connect_timeout_s: float | None = Field(None, gt=0, description="Connect timeout.")


class SqsStore(_Store):
    kind: Literal["sqs"] = Field(
        description="Amazon SQS via aioboto3 for per-request tensors (one queue per request "
        "and stage leg); plan data and tensors larger than a message in `backing`."
    )
    backing: Annotated[Union[DirStore, S3Store, OssStore], Field(discriminator="kind")] = Field(
        default_factory=DirStore,
        description="Store for plan data and claim checks (tensors over max_message_bytes).",
    )
    queue_prefix: str = Field(
        "tidegate-", pattern=r"^[A-Za-z0-9_-]{0,24}$", description="Prefix of queue names."
    )
    region: str = Field("us-east-1", description="SQS region.")
    endpoint_url: str | None = Field(None, description="SQS-compatible endpoint (testing).")
    aws_access_key_id: str | None = Field(
        None, description="Access key; default: the usual AWS credential chain."
    )
    aws_secret_access_key: str | None = Field(None, description="Secret key for the access key.")
    max_message_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest message (key plus tensor bytes) sent inline; larger tensors go "
        "through `backing` with a pointer in the message (claim check).",
    )
    max_attempts: int | None = Field(None, ge=1, description="Attempts per SQS call (retries).")
    connect_timeout_s: float | None = Field(None, gt=0, description="Connect timeout (3 s).")
    read_timeout_s: float | None = Field(None, gt=0, description="Read timeout (10 s).")


class PlanWeights(ConfigTable):
    """When plan weights of a model's old versions leave the store (burst/weight_retention.py)."""

    grace_h: float = Field(
        24.0,
        ge=0,
        description="A model's old version's plan weights are deleted once a newer version "
        "has been current, and no replica has prepared a plan of the old one, this many hours "
        "(replicas sharing the store have rolled over by then).",
    )
    keep_versions: int = Field(
        2,
        ge=1,
        description="The newest versions of each model whose plan weights always stay (2: the "
        "current one and the one before, for a rollback without re-upload).",
    )

    def store_keys(self) -> dict:
        """The keys ``burst.weight_retention`` reads from the store's config dict."""
        return {"weights_grace_h": self.grace_h, "weights_keep_versions": self.keep_versions}


StoreSettings = Annotated[
    Union[DirStore, MemoryStore, S3Store, OssStore, SqsStore], Field(discriminator="kind")
]
