"""The seam between the burst runtime and where tensors travel (object storage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative '/'-separated key, else raise ValueError.

    Every store checks keys with this, so a key that works on one works on all (and none can
    leave a directory store's root or a bucket prefix).
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"object key must be a non-empty string, got {key!r}")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"object key must be relative and use '/' separators: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Validate a delete/list prefix: '' means everything; a trailing '/' is allowed."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


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

    async def list_prefix(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` (those ``delete_prefix`` would delete)."""
        ...

    async def close(self) -> None: ...


async def read_buffer(store, key: str):
    """The bytes under ``key`` as a writable buffer (a tensor is built on it without a copy):
    the store's ``get_buffer`` where it has one (a directory store maps a file on memory),
    else ``get``'s bytes in a bytearray."""
    get_buffer = getattr(store, "get_buffer", None)
    if get_buffer is not None:
        return await get_buffer(key)
    return bytearray(await store.get(key))


class PagedPrefixes:
    """``delete_prefix`` and ``list_prefix`` of a store that lists a prefix in pages of full
    keys (``_pages``) and deletes a page of them at once (``_delete_full``): S3 and OSS."""

    prefix: str

    def _pages(self, prefix: str) -> AsyncIterator[list[str]]:
        raise NotImplementedError

    async def _delete_full(self, keys: list[str]) -> int:
        raise NotImplementedError

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        async for keys in self._pages(prefix):
            if keys:
                deleted += await self._delete_full(keys)
        return deleted

    async def list_prefix(self, prefix: str) -> list[str]:
        return [k[len(self.prefix) :] async for keys in self._pages(prefix) for k in keys]
