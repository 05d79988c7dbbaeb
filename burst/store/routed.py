"""Per-request tensors in one store, everything else (plans, weights) in another.

The embedded default puts tensors in flight on a memory-backed directory (``/dev/shm``): they
live for one request, and a file round trip there costs about half of one on disk (1 MB put +
get + delete: 2.5 vs 5.2 ms measured on this machine under load).
"""

from __future__ import annotations

from burst.store.base import read_buffer

REQUEST_PREFIXES = ("req/", "resp/")


class RoutedStore:
    def __init__(self, default, tensors):
        self.default = default
        self.tensors = tensors

    def _for(self, key: str):
        return self.tensors if key.startswith(REQUEST_PREFIXES) else self.default

    async def put(self, key: str, data: bytes) -> None:
        await self._for(key).put(key, data)

    async def get(self, key: str) -> bytes:
        return await self._for(key).get(key)

    async def get_buffer(self, key: str):
        return await read_buffer(self._for(key), key)

    async def delete(self, keys: list[str]) -> None:
        for store in (self.default, self.tensors):
            mine = [k for k in keys if self._for(k) is store]
            if mine:
                await store.delete(mine)

    async def delete_prefix(self, prefix: str) -> int:
        if prefix.startswith(REQUEST_PREFIXES):
            return await self.tensors.delete_prefix(prefix)
        if any(p.startswith(prefix) for p in REQUEST_PREFIXES):  # a prefix spanning both
            return await self.default.delete_prefix(prefix) + await self.tensors.delete_prefix(
                prefix
            )
        return await self.default.delete_prefix(prefix)

    async def list_prefix(self, prefix: str) -> list[str]:
        if prefix.startswith(REQUEST_PREFIXES):
            return await self.tensors.list_prefix(prefix)
        if any(p.startswith(prefix) for p in REQUEST_PREFIXES):  # a prefix spanning both
            keys = await self.default.list_prefix(prefix) + await self.tensors.list_prefix(prefix)
            return sorted(set(keys))
        return await self.default.list_prefix(prefix)

    async def close(self) -> None:
        await self.default.close()
        await self.tensors.close()
