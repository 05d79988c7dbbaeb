"""Settings of the async mode (``[async_queue]``): the durable queue and its consumers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AsyncQueueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Accept `Prefer: respond-async` on infer (202 + "
        "Location /v2/requests/{id}); off: the header is ignored.",
    )
    backend: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description="Durable queue: sqlite (embedded, DATA_DIR/async-queue.sqlite, one gateway "
        "process) or redis (a stream shared by every gateway, at the top-level `redis_url`).",
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
        "(503) before it fails with that error.",
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
