"""Object store on a local directory: the embedded default transport between master and workers."""

from __future__ import annotations

import asyncio
import mmap
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from burst.store.base import StoreError, check_key, check_prefix

# Below this size the thread hop costs more than the blocking I/O it would avoid (on a loaded
# machine a hop can wait milliseconds for a core). On a memory-backed root (/dev/shm) a 1 MB
# write is ~0.2 ms: I/O there stays on the loop up to MEMORY_INLINE_IO_MAX_BYTES.
_INLINE_IO_MAX_BYTES = 64 * 1024
MEMORY_INLINE_IO_MAX_BYTES = 16 * 1024 * 1024
# A concurrent cleanup may remove an empty parent folder between our mkdir and our write (it
# did: 2 in 2,000 burst requests at 16 clients got 500): create and write again. Five tries
# back to back all lost to three processes cleaning up on a loaded 2-core host: past the
# first few, each waits a millisecond more, so the cleaners' prunes and ours fall apart.
_WRITE_ATTEMPTS = 50
_BACK_TO_BACK = 3

__all__ = ["LocalDirStore", "check_key", "check_prefix"]  # the key checks live in store.base


class LocalDirStore:
    """Bytes under keys as files below ``root``. Writes are atomic (temp file + os.replace)."""

    def __init__(self, root: str | Path, *, inline_io_max_bytes: int | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # on memory (tmpfs) a delete is a few microseconds a file: no thread hop for it either
        self.memory_backed = _memory_backed(self.root)
        if inline_io_max_bytes is None:
            inline_io_max_bytes = (
                MEMORY_INLINE_IO_MAX_BYTES if self.memory_backed else _INLINE_IO_MAX_BYTES
            )
        self.inline_io_max_bytes = inline_io_max_bytes

    @classmethod
    def from_config(cls, cfg: dict):
        """``{"kind": "dir", "root": "/var/lib/tidegate/objects", "tensor_root"?: "/dev/shm/x"}``;
        with ``tensor_root``, per-request tensors live there (``burst.store.routed``)."""
        root = cfg.get("root") or cfg.get("path")
        if not root:
            raise ValueError("dir store config needs 'root'")
        if cfg.get("tensor_root"):
            from burst.store.routed import RoutedStore

            return RoutedStore(cls(root), cls(cfg["tensor_root"]))
        return cls(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if len(data) > self.inline_io_max_bytes:
            await asyncio.to_thread(self._write, path, data)
        else:
            self._write(path, data)

    def _write(self, path: Path, data: bytes) -> None:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return self._write_once(path, data)
            except (FileNotFoundError, FileExistsError) as e:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise StoreError(f"cannot write {path}: {e}") from e
                if attempt >= _BACK_TO_BACK:
                    time.sleep(0.001 * (attempt - _BACK_TO_BACK + 1))

    def _write_once(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                # No fsync: tensors in flight live for one request; readers need atomicity, not durability.
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        except (FileNotFoundError, FileExistsError):
            # a folder vanished under us: _write tries again (pathlib's mkdir raises
            # FileExistsError when another cleanup removed the folder it found existing)
            raise
        except OSError as e:
            raise StoreError(f"cannot write {path}: {e}") from e

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        with _reading(key):
            size = path.stat().st_size
        if size > self.inline_io_max_bytes:
            return await asyncio.to_thread(self._read, path, key)
        return self._read(path, key)

    async def get_buffer(self, key: str) -> bytearray | mmap.mmap:
        """The bytes under ``key`` as a writable buffer a tensor can live in: on a
        memory-backed root a private map of the file (no copy; the file may be deleted
        meanwhile), else read into a bytearray. ``get`` then a copy to make it writable held
        a tensor three times over while it was received."""
        path = self._path(key)
        with _reading(key):
            size = path.stat().st_size
        if self.memory_backed and size:
            return self._map(path, key)
        if size > self.inline_io_max_bytes:
            return await asyncio.to_thread(self._read_into, path, key, size)
        return self._read_into(path, key, size)

    @staticmethod
    def _map(path: Path, key: str) -> mmap.mmap:
        with _reading(key), open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)

    @staticmethod
    def _read_into(path: Path, key: str, size: int) -> bytearray:
        buf = bytearray(size)
        with _reading(key), open(path, "rb", buffering=0) as f:
            got = f.readinto(buf)
        if got != size:
            raise StoreError(f"cannot read {key}: {got} of {size} bytes (changed meanwhile)")
        return buf

    @staticmethod
    def _read(path: Path, key: str) -> bytes:
        with _reading(key):
            return path.read_bytes()

    async def delete(self, keys: list[str]) -> None:
        paths = [self._path(k) for k in keys]  # validate all before touching any
        if self.memory_backed:
            self._delete_paths(paths)
        else:
            await asyncio.to_thread(self._delete_paths, paths)

    def _delete_paths(self, paths: list[Path]) -> None:
        for p in paths:
            try:
                p.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            self._prune_empty_dirs(p.parent)

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, or already gone
                return
            directory = directory.parent

    async def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        if self.memory_backed:  # a request's tensors, at its end: on its critical path
            return self._delete_prefix(prefix)
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        # A prefix is a string prefix of keys (as in S3), not only a folder: "req1/a" matches "req1/ab".
        head, _, stem = prefix.rpartition("/")
        base = self.root.joinpath(*head.split("/")) if head else self.root
        if not base.is_dir():
            return 0
        deleted = 0
        for entry in list(base.iterdir()):
            if not entry.name.startswith(stem) or entry.name.startswith(".tmp-"):
                continue
            if entry.is_dir():
                for dirpath, _dirs, files in os.walk(entry, topdown=False):
                    for name in files:
                        if name.startswith(".tmp-"):
                            continue  # a concurrent writer's temp file; it removes or renames it
                        try:
                            os.unlink(os.path.join(dirpath, name))
                            deleted += 1
                        except FileNotFoundError:
                            pass
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
            else:
                try:
                    entry.unlink()
                    deleted += 1
                except FileNotFoundError:
                    pass
        self._prune_empty_dirs(base)
        return deleted

    async def list_prefix(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        return await asyncio.to_thread(self._list_prefix, prefix)

    def _list_prefix(self, prefix: str) -> list[str]:
        keys = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    keys.append(key)
        return sorted(keys)

    async def close(self) -> None:
        return None


@contextmanager
def _reading(key: str):
    """A read's failures as the store's errors: a key that is not there (or is a prefix of
    others) is missing, anything else cannot be read."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise StoreError(f"no such key: {key}", missing=True) from None
    except IsADirectoryError:
        raise StoreError(f"no such key: {key} (it is a prefix)", missing=True) from None
    except (OSError, ValueError) as e:  # (ValueError: mmap's)
        raise StoreError(f"cannot read {key}: {e}") from e


def _memory_backed(path: Path) -> bool:
    """Whether ``path`` is on a tmpfs (read from /proc/mounts; False when unknown)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return False
    best = max(
        (m for m in mounts if str(path).startswith(m[0].rstrip("/") + "/") or str(path) == m[0]),
        key=lambda m: len(m[0]),
        default=None,
    )
    return best is not None and best[1] == "tmpfs"
