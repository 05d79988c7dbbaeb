"""Typed settings: defaults, then a TOML file, then ``TIDEGATE_*`` environment variables."""

# size: ~380 lines: the top-level table, one described field per setting (nested tables live in
# their packages' config.py); splitting it would scatter what a person reads top to bottom

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from burst.faas.config import LocalPlatform, PlatformSettings
from burst.store.config import DirStore, PlanWeights, StoreSettings
from gateway import settings_errors
from gateway.asyncq.config import AsyncQueueSettings
from gateway.ledger.config import LedgerSettings
from gateway.policy_settings import AutoscalingSettings, NoScaling, RoutingPolicyName
from gateway.settings_errors import (  # noqa: F401 (ENV_PREFIX, UnknownSetting: public)
    ENV_PREFIX,
    UnknownSetting,
    check_environment,
)
from gateway.tenants.config import TenantSettings
from policies.config_table import ConfigTable, refuse_bools
from vmpool.provisioners.config import Ec2Settings, KubernetesSettings


class Section(ConfigTable):
    """Base of every settings table: an unknown key is an error, never silently ignored, no
    number is nan or inf, and no number is a boolean (``policies.config_table``)."""


class VmSettings(Section):
    provisioner: Literal["local", "static", "ec2", "kubernetes"] = Field(
        "local",
        description="local: model servers as subprocesses; static: the fixed `urls`; "
        "ec2: an Auto Scaling group ([vm.ec2]); kubernetes: a Deployment ([vm.kubernetes]).",
    )
    ec2: Ec2Settings = Field(default_factory=Ec2Settings, description="The EC2 fleet.")
    kubernetes: KubernetesSettings = Field(
        default_factory=KubernetesSettings, description="The Kubernetes fleet."
    )
    urls: list[str] = Field(default_factory=list, description="static: model-server base URLs.")
    replicas: int = Field(
        1, ge=0, le=10_000, description="VM replicas (model-server processes) to keep."
    )
    threads: int = Field(
        0, ge=0, le=1024, description="torch threads per replica; 0 = cores / replicas."
    )
    boot_delay_s: float = Field(
        0.0,
        ge=0,
        description="Extra delay before a replica starts, "
        "to behave like a VM that takes time to boot.",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Timeout of one replica call.")
    health_interval_s: float = Field(1.0, gt=0, description="Replica health-check period.")
    max_batch_size: int | None = Field(None, ge=1, description="Override the models' max batch.")
    max_queue_delay_ms: float | None = Field(None, ge=0, description="Override batching delay.")
    coalesce: bool = Field(
        True,
        description="Send concurrent small requests (64 KiB of tensors or less) for one "
        "replica and model as one batched call, up to the model's max batch; each client "
        "still gets its own answer, ledger row and metrics.",
    )
    coalesce_max_in_flight: int = Field(
        2,
        ge=0,
        description="With coalesce: while requests of a model are out to a replica, newer "
        "small requests wait for one to come back and go together as one batch (fewer, larger "
        "calls: much less CPU per request on both sides): behind one while the replica has "
        "time to spare (its answers report its batches), behind this many (one batch running, "
        "one queued) once it spends over 60 % of its time on batches. 0: merge only requests "
        "that arrive together.",
    )
    coalesce_max_hold_ms: float = Field(
        20.0,
        ge=0,
        description="Longest a request waits under coalesce_max_in_flight before it is sent "
        "anyway. Only models whose calls come back within it (moving average) are held: for "
        "slower ones the per-call work is small beside the compute.",
    )

    @model_validator(mode="after")
    def _provisioner_has_its_table(self) -> "VmSettings":
        if self.provisioner == "static":
            if not self.urls:
                raise ValueError("vm.provisioner = 'static' needs vm.urls (model-server URLs)")
            for url in self.urls:
                if not url.startswith(("http://", "https://")) or len(url) < 10:
                    raise ValueError(f"vm.urls: {url!r} is not an http:// or https:// URL")
        if self.provisioner == "ec2" and not self.ec2.group:
            raise ValueError("vm.provisioner = 'ec2' needs [vm.ec2] group")
        if self.provisioner == "kubernetes" and not self.kubernetes.deployment:
            raise ValueError("vm.provisioner = 'kubernetes' needs [vm.kubernetes] deployment")
        return self


class BurstSettings(Section):
    enabled: bool = Field(True, description="Allow the serverless (burst) path.")
    platform: PlatformSettings = Field(
        default_factory=LocalPlatform,
        description="Function platform, by `kind`: local (embedded), aws_lambda, alibaba_fc.",
    )
    store: StoreSettings = Field(
        default_factory=DirStore,
        description="Tensor transport store, by `kind`: dir (embedded), s3, oss, sqs, memory.",
    )
    transport: Literal["auto", "inline", "store", "queue", "per-stage"] = Field(
        "auto",
        description="How tensors travel between master and workers: inline in the "
        "invocation payload, through the object store (with an sqs store: its backing "
        "store), through the queue (sqs), auto (inline under the payload limit, else the "
        "store as configured), or per-stage (the planner picks one per stage from the "
        "profile's transfer fits and the prices).",
    )
    default_workers: int = Field(4, ge=1, le=64, description="Workers per stage when not asked.")
    max_workers: int = Field(
        16, ge=1, le=256, description="Largest worker count a request may ask."
    )
    memory_mb: int = Field(1024, ge=128, le=10240, description="Memory size per function.")
    concurrency: int = Field(
        16, ge=1, le=100_000, description="Local runtime: concurrent instances cap."
    )
    keep_alive_s: float = Field(300.0, gt=0, description="Local runtime: idle instance keep-alive.")
    instance_idle_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="How long the burst path counts an instance it has had answered as still "
        "warm (a spill takes it, or waits for a busy one, rather than start another). Default: "
        "keep_alive_s on the local runtime; 60 s on aws_lambda and alibaba_fc, whose idle "
        "instances live for a time they do not set (AWS: 'a non-deterministic period', not "
        "published; Function Compute: usually 3-5 minutes). Too short only makes spills start "
        "instances the platform still had warm; too long sends spills expecting a warm instance "
        "into cold starts.",
    )
    weights: PlanWeights = Field(default_factory=PlanWeights, description="Old plan weights.")
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=900,
        description="Timeout of one burst request and of its functions (at most 900 s, "
        "as AWS Lambda's).",
    )

    @model_validator(mode="after")
    def _workers_in_order(self) -> "BurstSettings":
        if self.default_workers > self.max_workers:
            raise ValueError(
                f"burst.default_workers ({self.default_workers}) is above "
                f"burst.max_workers ({self.max_workers})"
            )
        return self


# TenantSettings lives with the tenants (gateway/tenants/config.py): keys are hashed there.


class Settings(BaseSettings):
    """Everything ``tidegate serve`` needs. Nested env vars use ``__``: TIDEGATE_VM__REPLICAS=2."""

    model_config = SettingsConfigDict(
        env_prefix="TIDEGATE_", env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    host: str = Field("127.0.0.1", min_length=1, description="Address the gateway listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the gateway listens on.")
    grpc_port: int = Field(
        8001,
        ge=-1,
        le=65535,
        description="Port of the Open Inference "
        "Protocol gRPC service, beside HTTP; 0 = a free port, -1 = no gRPC.",
    )
    data_dir: Path = Field(Path(".tidegate"), description="Repository, ledger, objects and logs.")
    repo: Path | None = Field(None, description="Model repository; default DATA_DIR/models.")
    demo_model: str | None = Field(
        "resnet18",
        description="Exported on first run into an empty "
        "default repository; empty string for none.",
    )
    max_body_mb: float = Field(
        64.0, gt=0, description="Largest request body accepted (413 past it)."
    )
    max_inflight_body_mb: float = Field(
        1024.0,
        gt=0,
        description="Bytes of request bodies being received or served at once, "
        "across requests; past it new bodies get 503 with Retry-After.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A request body must arrive within "
        "this time (408 and the connection closed past it).",
    )
    drain_timeout_s: float = Field(
        30.0,
        gt=0,
        description="At SIGINT/SIGTERM, how long HTTP requests and gRPC calls in flight have to "
        "finish (new ones are refused at once); past it their connections are closed and the "
        "gateway goes on stopping.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS "
        "(e.g. https://app.example.com, or * for any); empty = off.",
    )
    access_log: Literal["text", "json", "off"] = Field(
        "text",
        description="One line per request on the tidegate.access logger (method, path, "
        "status, tenant, model, route, latency, request id): text (key=value) or JSON lines.",
    )
    routing_policy: RoutingPolicyName = Field(
        "threshold",
        description="Where requests go: vm-only, burst-only, threshold (spill past "
        "a queue length) or slo-aware (cheapest path predicted to meet the SLO).",
    )
    admin_api_key: str | None = Field(
        None,
        min_length=1,
        description="Key for /admin (Bearer or x-api-key); "
        "without it /admin answers only loopback callers of a "
        "gateway with no tenants.",
    )
    autoscaling: AutoscalingSettings = Field(
        default_factory=NoScaling,
        description="VM autoscaling, by `policy`: none, target, "
        "knative, predictive or queue; the policy's parameters sit beside it.",
    )
    spill_outstanding_per_replica: int = Field(16, ge=1, description="threshold: spill past this.")
    vm: VmSettings = Field(
        default_factory=VmSettings, description="The VM pool: full-model servers."
    )
    burst: BurstSettings = Field(
        default_factory=BurstSettings,
        description="The burst path: partitioned inference on functions.",
    )
    tenants: list[TenantSettings] = Field(
        default_factory=list,
        description="API tenants (`[[tenants]]` tables); none = open, keyless access.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis holding the tenants' rate-limit, "
        "quota and budget counters, shared by every gateway replica "
        "(redis://host:6379/0); none = counters per process.",
    )
    fail_open: bool = Field(
        True,
        description="While redis_url does not answer: true admits requests unchecked "
        "(no rate limits, quotas or budgets; counted in tidegate_shared_limits_unavailable_total), "
        "false refuses those of tenants with limits (503, Retry-After: 1) until Redis is back.",
    )
    ledger: LedgerSettings = Field(
        default_factory=LedgerSettings,
        description="The request ledger: an SQLite file, or PostgreSQL shared by replicas.",
    )
    async_queue: AsyncQueueSettings = Field(
        default_factory=AsyncQueueSettings,
        description="Async inference (`Prefer: "
        "respond-async`): the durable queue, its consumers, results and callbacks.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data):
        return refuse_bools(cls, data)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each origin is ``*`` or ``scheme://host[:port]``, as a browser sends it."""
        for origin in value:
            scheme, sep, host = origin.partition("://")
            if origin != "*" and (
                not sep or scheme not in ("http", "https") or not host or "/" in host
            ):
                raise ValueError(
                    f"cors origin {origin!r} is not * or scheme://host[:port] "
                    "(no path, no trailing slash)"
                )
        return value

    @field_validator("routing_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from policies.routing import POLICIES

        if value not in POLICIES:
            raise ValueError(f"unknown routing policy {value!r}; known: {', '.join(POLICIES)}")
        return value

    @field_validator("data_dir", "repo", mode="before")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (leave it out for the default)")
        if isinstance(value, str | Path):  # "~/tidegate" in a file means the home directory
            return Path(value).expanduser()
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.async_queue.backend == "redis" and not self.redis_url:
            raise ValueError("async_queue.backend = 'redis' needs redis_url")
        if not self.burst.enabled and self.routing_policy == "burst-only":
            raise ValueError("routing_policy = 'burst-only' needs burst.enabled = true")
        if not self.burst.enabled and self.vm.replicas == 0 and self.autoscaling.policy == "none":
            raise ValueError(
                "nothing would serve: vm.replicas = 0, burst.enabled = false and no autoscaling"
            )
        late = [t.name for t in self.tenants if t.slo_class == "async"]
        if late and not self.async_queue.enabled:
            raise ValueError(f"tenant {late[0]!r} has slo_class = 'async' but async_queue is off")
        names: set[str] = set()
        owners: dict[str, str] = {}
        for tenant in self.tenants:
            if tenant.name in names:
                raise ValueError(f"two tenants are named {tenant.name!r}")
            names.add(tenant.name)
            for digest in tenant.api_key_hashes:
                if owners.setdefault(digest, tenant.name) != tenant.name:
                    raise ValueError(
                        f"tenants {owners[digest]!r} and {tenant.name!r} share an API key"
                    )
        return self

    @property
    def repo_path(self) -> Path:
        return self.repo if self.repo is not None else self.data_dir / "models"

    @property
    def replica_threads(self) -> int:
        if self.vm.threads:
            return self.vm.threads
        return max(1, (os.cpu_count() or 1) // max(1, self.vm.replicas))

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> "Settings":
        """Defaults < TOML file < environment < explicit overrides (CLI flags)."""
        data: dict = {}
        if path is not None:
            text = Path(path).read_text()
            data = tomllib.loads(text)
        check_environment(cls, os.environ)
        env_settings = cls()  # environment only
        env_set = env_settings.model_dump(exclude_unset=True)
        merged = _deep_merge(data, env_set)
        merged = _deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(merged)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def describe_error(exc: Exception, model: type[BaseModel] | None = None) -> str:
    """One line a person can act on, from a pydantic ``ValidationError`` (first problem)."""
    return settings_errors.describe_error(exc, model or Settings)
