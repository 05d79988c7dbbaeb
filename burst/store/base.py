"""The seam between the burst runtime and where tensors travel (object storage)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """An object-store operation failed (``missing`` is True when the key does not exist)."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


@runtime_checkable
class ObjectStore(Protocol):
    """Bytes under string keys. Keys use '/' as a separator; prefixes act like folders."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes:
        """Raise ``StoreError(missing=True)`` if the key does not exist."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Delete the keys; keys that do not exist are ignored."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""
        ...

    async def close(self) -> None: ...
