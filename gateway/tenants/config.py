"""``[[tenants]]`` settings (imported by gateway.settings; imports nothing of ours).

API keys may be given plain (``api_keys``, hashed as the settings load and never kept) or already
hashed (``api_key_hashes``, ``sha256:<hex>``, what ``tidegate`` operators should put in files).
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from policies.config_table import ConfigTable

_HASH = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


def hash_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex digest>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class TenantSettings(ConfigTable):
    name: str = Field(min_length=1, description="Tenant name (ledger, metrics, reports).")
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Plain API keys; hashed at load, never stored or "
        "logged. Prefer api_key_hashes in files.",
    )
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description="SHA-256 of each API key, 'sha256:<64 hex>' (python "
        "-c \"import hashlib;print(hashlib.sha256(b'KEY').hexdigest())\").",
    )
    rate_per_s: float = Field(0.0, ge=0, description="Token-bucket refill rate; 0 = unlimited.")
    burst: int = Field(0, ge=0, description="Token-bucket size; 0 = max(1, rate_per_s).")
    daily_quota: int | None = Field(
        None, ge=0, description="Requests per UTC day; none = unlimited."
    )
    monthly_quota: int | None = Field(
        None, ge=0, description="Requests per UTC calendar month; none = unlimited."
    )
    daily_budget_usd: float | None = Field(
        None, ge=0, description="Spend per UTC day; requests past it get 429 until midnight UTC."
    )
    slo_ms: float | None = Field(
        None, gt=0, description="Latency SLO class (default: the model's)."
    )
    slo_class: Literal["interactive", "async"] = Field(
        "interactive",
        description="async: the tenant's infer calls may be queued (202 + Location, as with "
        "`Prefer: respond-async`) when the queue meets `deadline_s`; else served at once.",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        description="Async requests' deadline (answer due this long after acceptance); "
        "default `async_queue.default_deadline_s`.",
    )
    models: list[str] = Field(
        default_factory=list,
        description="Models this tenant may call (403 on others); empty = all.",
    )
    allow_route_override: bool = Field(False, description="May use X-Tidegate-Route/-Workers.")
    admin: bool = Field(False, description="May read every tenant's usage, not only its own.")
    callback_secret: str | None = Field(
        None,
        description="HMAC secret signing this tenant's async callbacks (X-Tidegate-Signature).",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, values: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value() for key in values):
            raise ValueError("an api_keys entry is empty")
        return values

    @field_validator("api_key_hashes")
    @classmethod
    def _hashes(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            match = _HASH.match(value.strip().lower())
            if not match:
                raise ValueError("an api_key_hashes entry is not 'sha256:<64 hex digits>'")
            out.append("sha256:" + match[1])
        return out

    @model_validator(mode="after")
    def _hash_plain_keys(self) -> "TenantSettings":
        # plain keys live only until here: from now on only their hashes exist
        if self.api_keys:
            self.api_key_hashes = self.api_key_hashes + [
                hash_key(k.get_secret_value()) for k in self.api_keys
            ]
            self.api_keys = []
        return self

    @property
    def bucket_size(self) -> float:
        return float(self.burst or max(1.0, self.rate_per_s))
