"""A local runtime function: its configuration (the CreateFunction subset) and live state."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field


@dataclass
class FunctionSpec:
    """A function's configuration (the CreateFunction subset the runtime honours)."""

    name: str
    handler: str  # "module:function", importable in the instance process
    memory_mb: int = 128  # Lambda's defaults
    timeout_s: float = 3.0
    environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None

    def validate(self) -> None:
        if not self.name or len(self.name) > 64 or ":" in self.name or "/" in self.name:
            raise ValueError(f"function name {self.name!r} must be 1-64 chars without ':' or '/'")
        if ":" not in self.handler and "." not in self.handler:
            raise ValueError(f"handler {self.handler!r} must be module:function")
        if not 64 <= self.memory_mb <= 10240:
            raise ValueError(f"memory_mb {self.memory_mb} must be between 64 and 10240")
        if not 0 < self.timeout_s <= 900:
            raise ValueError(f"timeout_s {self.timeout_s} must be in (0, 900]")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 0:
            raise ValueError("reserved_concurrency must be >= 0")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.environment.items()):
            raise ValueError("environment variables must map strings to strings")

    def configuration(self) -> dict:
        """Lambda's FunctionConfiguration shape."""
        return {
            "FunctionName": self.name,
            "FunctionArn": f"arn:aws:lambda:local:000000000000:function:{self.name}",
            "Runtime": f"python{sys.version_info.major}.{sys.version_info.minor}",
            "Handler": self.handler,
            "MemorySize": self.memory_mb,
            "Timeout": math.ceil(self.timeout_s),  # an integer number of seconds in Lambda's API
            "Environment": {"Variables": dict(self.environment)},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Version": "$LATEST",
        }


class FunctionExists(ValueError):
    """CreateFunction of a name that is taken (Lambda's ResourceConflictException)."""


class FunctionState:
    """A function's instances: idle (LIFO, the warmest first; spares age out) and busy."""

    def __init__(self, spec: FunctionSpec):
        self.spec = spec
        self.idle: list = []
        self.busy: set = set()
        self.in_flight = 0


def function_name_from_path(raw: str) -> str:
    """Accept a name, ``name:qualifier``, or a (partial) ARN, as Lambda does."""
    if ":function:" in raw:
        raw = raw.split(":function:", 1)[1]
    return raw.split(":", 1)[0]
