"""Settings of the async mode (``[async_queue]``): the durable queue and its consumers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from burst.store.config import StoreSettings
from policies.config_table import ConfigTable

# SQS refuses a message over 256 KiB; an inline payload is base64 in the JSON message (4/3 of
# its size), so 128 KiB of payload leaves room for the fields around it.
DEFAULT_INLINE_LIMIT_BYTES = 128 * 1024


class SqsQueueSettings(ConfigTable):
    queue_url: str | None = Field(
        None, description="URL of the SQS queue; default: looked up from `queue_name`."
    )
    queue_name: str = Field("tidegate-async", description="Queue name when no URL is given.")
    create: bool = Field(
        False, description="Create the queue (standard, not FIFO) if it does not exist."
    )
    region: str = Field("us-east-1", description="AWS region of the queue.")
    endpoint_url: str | None = Field(
        None, description="SQS-compatible endpoint (moto, ElasticMQ, LocalStack: testing)."
    )
    aws_access_key_id: str | None = Field(
        None, description="Access key; default: the usual AWS credential chain."
    )
    aws_secret_access_key: str | None = Field(None, description="Secret key for the access key.")


class AsyncQueueSettings(ConfigTable):
    enabled: bool = Field(
        True,
        description="Accept `Prefer: respond-async` on infer (202 + "
        "Location /v2/requests/{id}); off: the header is ignored.",
    )
    backend: Literal["sqlite", "redis", "sqs"] = Field(
        "sqlite",
        description="Durable queue: sqlite (embedded, DATA_DIR/async-queue.sqlite, one gateway "
        "process), redis (a stream shared by every gateway, at the top-level `redis_url`) or "
        "sqs (Amazon SQS carries the work, [async_queue.sqs]; states and answers in the "
        "gateway's SQLite table).",
    )
    sqs: SqsQueueSettings = Field(
        default_factory=SqsQueueSettings, description="The SQS queue (backend = sqs)."
    )
    inline_limit_bytes: int = Field(
        DEFAULT_INLINE_LIMIT_BYTES,
        ge=0,
        le=192 * 1024,
        description="Request bodies and answers up to this size travel inside the queue "
        "message; larger ones go through `store` with a pointer in the message (claim check).",
    )
    store: StoreSettings | None = Field(
        None,
        description="Object store of claim-checked payloads (keys async/<id>/...); default: "
        "the burst path's [burst.store].",
    )
    encrypt: bool = Field(
        True,
        description="Seal request bodies and answers (inline and in the store) with AES-GCM "
        "under a key made per request, kept only in the queue's record of it.",
    )
    default_deadline_s: float = Field(
        3600.0,
        gt=0,
        description="Deadline of an async request whose tenant sets none: past "
        "`urgent_fraction` of it a job is served even without spare VM capacity.",
    )
    urgent_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a job's deadline after which it no longer waits for idle VMs.",
    )
    consumers: int = Field(2, ge=1, le=256, description="Jobs served at once by this gateway.")
    slots_per_replica: int = Field(
        2,
        ge=1,
        description="A consumer takes a job only while the "
        "ready VM replicas have fewer requests in flight than this "
        "many each (async work fills idle VM capacity).",
    )
    lease_s: float = Field(
        300.0,
        gt=0,
        description="A claimed job not answered in this time is "
        "given to another consumer (at-least-once).",
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Tries of a job whose path is unavailable "
        "(503), or whose model is not loaded (404: an unload, then a load), "
        "before it fails with that error.",
    )
    retry_delay_s: float = Field(1.0, ge=0, description="Wait before retrying such a job.")
    result_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="How long a finished job's answer is kept for GET /v2/requests/{id}.",
    )
    callback_secret: str | None = Field(
        None,
        description="HMAC secret signing callbacks of "
        "tenants without their own `callback_secret`; callbacks "
        "are refused (400) when neither is set.",
    )
    callback_attempts: int = Field(3, ge=1, description="Deliveries tried per callback.")
    callback_timeout_s: float = Field(10.0, gt=0, description="Timeout of one callback POST.")
    callback_allow_private: bool = Field(
        False,
        description="Send callbacks to loopback and private addresses (10/8, 172.16/12, "
        "192.168/16, 100.64/10, fc00::/7). Off by default: a tenant's callback URL could "
        "otherwise reach the gateway's internal network (SSRF); a callback URL naming such an "
        "address is a 400 that names this setting. Turn it on where every tenant is trusted "
        "(one machine, a receiver on localhost). Link-local and cloud metadata addresses "
        "(169.254/16, fe80::/10, fd00:ec2::254, 100.100.100.200) are refused either way.",
    )
