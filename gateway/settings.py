"""Typed settings: defaults, then a TOML file, then ``TIDEGATE_*`` environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class VmSettings(BaseModel):
    provisioner: Literal["local", "static"] = Field(
        "local", description="local: model servers as subprocesses; static: the fixed `urls`.")
    urls: list[str] = Field(default_factory=list, description="static: model-server base URLs.")
    replicas: int = Field(1, ge=0, description="VM replicas (model-server processes) to keep.")
    threads: int = Field(0, ge=0, description="torch threads per replica; 0 = cores / replicas.")
    boot_delay_s: float = Field(0.0, ge=0, description="Extra delay before a replica starts, "
                                "to behave like a VM that takes time to boot.")
    request_timeout_s: float = Field(30.0, gt=0, description="Timeout of one replica call.")
    health_interval_s: float = Field(1.0, gt=0, description="Replica health-check period.")
    max_batch_size: int | None = Field(None, ge=1, description="Override the models' max batch.")
    max_queue_delay_ms: float | None = Field(None, ge=0, description="Override batching delay.")


class BurstSettings(BaseModel):
    enabled: bool = Field(True, description="Allow the serverless (burst) path.")
    platform: dict = Field(default_factory=lambda: {"kind": "local"},
                           description="Function platform: local (embedded), aws_lambda, alibaba_fc.")
    store: dict = Field(default_factory=lambda: {"kind": "dir"},
                        description="Tensor transport store: dir (embedded), s3, oss.")
    transport: Literal["auto", "inline", "store"] = Field(
        "auto", description="How tensors travel between master and workers: inline in the "
        "invocation payload, through the store, or auto (inline under the payload limit).")
    default_workers: int = Field(4, ge=1, le=64, description="Workers per stage when not asked.")
    max_workers: int = Field(16, ge=1, le=256, description="Largest worker count a request may ask.")
    memory_mb: int = Field(1024, ge=128, le=10240, description="Memory size per function.")
    concurrency: int = Field(16, ge=1, description="Local runtime: concurrent instances cap.")
    keep_alive_s: float = Field(300.0, ge=0, description="Local runtime: idle instance keep-alive.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one burst request.")


class TenantSettings(BaseModel):
    name: str
    api_keys: list[str] = Field(default_factory=list)
    rate_per_s: float = Field(0.0, ge=0, description="Token-bucket refill rate; 0 = unlimited.")
    burst: int = Field(0, ge=0, description="Token-bucket size; 0 = max(1, rate_per_s).")
    daily_quota: int | None = Field(None, ge=0, description="Requests per UTC day; none = unlimited.")
    slo_ms: float | None = Field(None, gt=0, description="Latency SLO class (default: the model's).")
    budget_usd: float | None = Field(None, ge=0, description="Spend cap; requests past it get 429.")
    allow_route_override: bool = Field(False, description="May use X-Tidegate-Route/-Workers.")


class Settings(BaseSettings):
    """Everything ``tidegate serve`` needs. Nested env vars use ``__``: TIDEGATE_VM__REPLICAS=2."""

    model_config = SettingsConfigDict(env_prefix="TIDEGATE_", env_nested_delimiter="__",
                                      extra="forbid")

    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the gateway listens on.")
    data_dir: Path = Field(Path(".tidegate"), description="Repository, ledger, objects and logs.")
    repo: Path | None = Field(None, description="Model repository; default DATA_DIR/models.")
    demo_model: str | None = Field("resnet18", description="Exported on first run into an empty "
                                   "default repository; empty string for none.")
    max_body_mb: float = Field(64.0, gt=0, description="Largest request body accepted (413 past it).")
    routing_policy: str = Field("threshold", description="vm-only, burst-only or threshold.")
    spill_outstanding_per_replica: int = Field(16, ge=1, description="threshold: spill past this.")
    vm: VmSettings = Field(default_factory=VmSettings)
    burst: BurstSettings = Field(default_factory=BurstSettings)
    tenants: list[TenantSettings] = Field(default_factory=list)

    @field_validator("routing_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        from policies.routing import POLICIES

        if value not in POLICIES:
            raise ValueError(f"unknown routing policy {value!r}; known: {', '.join(POLICIES)}")
        return value

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
