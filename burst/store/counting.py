"""Counts the billable requests a store serves (object stores and queues bill per request)."""

from __future__ import annotations

from burst.store.base import read_buffer
from burst.store.requests import counting


class CountingStore:
    """Wraps an ObjectStore. ``puts`` counts PUT/LIST-class requests (S3 and OSS bill those at
    the higher tier), ``gets`` GET-class ones; deletes are free on both and not counted. A store
    that counts its own requests (SQS: ``burst.store.requests``) gives its object requests and
    ``queue_requests`` instead of one per call."""

    def __init__(self, inner):
        self.inner = inner
        self.puts = 0
        self.gets = 0
        self.queue_requests = 0

    async def _counted(self, call, *, puts: int = 0, gets: int = 0):
        with counting() as seen:
            result = await call
        if seen.self_counted:
            puts, gets = seen.object_puts, seen.object_gets
            self.queue_requests += seen.queue_requests
        self.puts += puts
        self.gets += gets
        return result

    async def put(self, key: str, data: bytes) -> None:
        await self._counted(self.inner.put(key, data), puts=1)

    async def get(self, key: str) -> bytes:
        return await self._counted(self.inner.get(key), gets=1)

    async def get_buffer(self, key: str):
        return await self._counted(read_buffer(self.inner, key), gets=1)

    async def delete(self, keys: list[str]) -> None:
        await self._counted(self.inner.delete(keys))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._counted(self.inner.delete_prefix(prefix), puts=1)  # the LIST

    async def list_prefix(self, prefix: str) -> list[str]:
        return await self._counted(self.inner.list_prefix(prefix), puts=1)  # (a LIST)

    async def close(self) -> None:
        await self.inner.close()
