"""In-process object store: for tests and single-process runs where master and workers share memory."""

from __future__ import annotations

from burst.store.base import StoreError, check_key, check_prefix


class MemoryStore:
    """Bytes under keys in a dict. Same key rules and errors as the other stores."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}

    @classmethod
    def from_config(cls, cfg: dict) -> "MemoryStore":
        return cls()

    async def put(self, key: str, data: bytes) -> None:
        self._objects[check_key(key)] = bytes(data)

    async def get(self, key: str) -> bytes:
        try:
            return self._objects[check_key(key)]
        except KeyError:
            raise StoreError(f"no such key: {key}", missing=True) from None

    async def delete(self, keys: list[str]) -> None:
        for k in [check_key(k) for k in keys]:
            self._objects.pop(k, None)

    async def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        doomed = [k for k in self._objects if k.startswith(prefix)]
        for k in doomed:
            del self._objects[k]
        return len(doomed)

    async def list_prefix(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        return sorted(k for k in self._objects if k.startswith(prefix))

    async def close(self) -> None:
        return None
