"""Counts the billable requests a store serves (object stores bill per request)."""

from __future__ import annotations


class CountingStore:
    """Wraps an ObjectStore. ``puts`` counts PUT/LIST-class requests (S3 and OSS bill those at
    the higher tier), ``gets`` GET-class ones; deletes are free on both and not counted."""

    def __init__(self, inner):
        self.inner = inner
        self.puts = 0
        self.gets = 0

    async def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        await self.inner.put(key, data)

    async def get(self, key: str) -> bytes:
        self.gets += 1
        return await self.inner.get(key)

    async def delete(self, keys: list[str]) -> None:
        await self.inner.delete(keys)

    async def delete_prefix(self, prefix: str) -> int:
        self.puts += 1  # the LIST that finds the keys
        return await self.inner.delete_prefix(prefix)

    async def close(self) -> None:
        await self.inner.close()
