"""Object store on Alibaba Cloud OSS through oss2 (a sync SDK, so calls run on a thread pool)."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import oss2
from oss2.exceptions import ClientError, NoSuchKey, OssError, RequestError

from burst.retry import RetryPolicy, with_retries
from burst.store.base import PagedPrefixes, StoreError, check_key, check_prefix

_DELETE_BATCH_MAX = 1000  # DeleteMultipleObjects accepts at most 1000 keys per call
_LIST_PAGE_MAX = 1000


def _transient(exc: BaseException, attempt: int) -> bool:
    """OSS's 5xx answers and transport failures (oss2 raises RequestError for those)."""
    return isinstance(exc, RequestError) or (isinstance(exc, OssError) and (exc.status or 0) >= 500)


class OSSStore(PagedPrefixes):
    """Bytes under ``prefix`` + key in one OSS bucket. One oss2.Bucket with a pooled session."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str,
        access_key_id: str,
        access_key_secret: str,
        prefix: str = "",
        security_token: str | None = None,
        max_threads: int = 16,
        connect_timeout_s: float = 10.0,
        max_attempts: int = 4,
    ):
        if not bucket or not endpoint:
            raise ValueError("OSSStore needs a bucket and an endpoint")
        if prefix:
            check_prefix(prefix)
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        if security_token:
            auth: Any = oss2.StsAuth(access_key_id, access_key_secret, security_token)
        else:
            auth = oss2.Auth(access_key_id, access_key_secret)
        # The session's connection pool must cover every worker thread, or threads queue on it.
        session = oss2.Session(pool_size=max_threads)
        try:
            self._bucket = oss2.Bucket(
                auth, endpoint, bucket, session=session, connect_timeout=connect_timeout_s
            )
        except ClientError as e:  # oss2 validates bucket names (3-63 chars, a-z 0-9 -)
            raise ValueError(
                f"invalid OSS bucket {bucket!r} or endpoint {endpoint!r}: {e}"
            ) from None
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="oss")
        self.retry = RetryPolicy(attempts=max_attempts)
        self.bucket = bucket

    @classmethod
    def from_config(cls, cfg: dict) -> "OSSStore":
        """``{"kind": "oss", "bucket", "endpoint", "access_key_id", "access_key_secret", ...}``."""
        missing = [
            k
            for k in ("bucket", "endpoint", "access_key_id", "access_key_secret")
            if not cfg.get(k)
        ]
        if missing:
            raise ValueError(f"oss store config is missing {', '.join(missing)}")
        known = {
            "endpoint",
            "access_key_id",
            "access_key_secret",
            "prefix",
            "security_token",
            "max_threads",
            "connect_timeout_s",
            "max_attempts",
        }
        return cls(cfg["bucket"], **{k: v for k, v in cfg.items() if k in known})

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run an oss2 call on the pool; every call the store makes is idempotent, so transient
        failures are retried with backoff (``burst.retry``)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        return await with_retries(
            lambda: loop.run_in_executor(self._pool, call),
            _transient,
            self.retry,
            what=f"oss {getattr(fn, '__name__', 'call')}",
        )

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        # oss2 reads anything but bytes/str as a file: a sealed tensor is a bytearray
        data = data if isinstance(data, bytes) else bytes(data)
        try:
            await self._call(self._bucket.put_object, full, data)
        except (OssError, ClientError) as e:
            raise StoreError(f"oss put {self.bucket}/{full} failed: {_describe(e)}") from e

    async def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            return await self._call(self._get_sync, full)
        except NoSuchKey:
            raise StoreError(f"no such key: {key}", missing=True) from None
        except (OssError, ClientError) as e:
            raise StoreError(f"oss get {self.bucket}/{full} failed: {_describe(e)}") from e

    def _get_sync(self, full: str) -> bytes:
        result = self._bucket.get_object(full)
        # read() through oss2 so its CRC-64 check against x-oss-hash-crc64ecma runs.
        return result.read()

    async def delete(self, keys: list[str]) -> None:
        full = [self._full(k) for k in keys]  # validate all before deleting any
        await self._delete_full(full)

    async def _delete_full(self, full_keys: list[str]) -> int:
        deleted = 0
        for i in range(0, len(full_keys), _DELETE_BATCH_MAX):
            batch = full_keys[i : i + _DELETE_BATCH_MAX]
            try:
                await self._call(self._bucket.batch_delete_objects, batch)
            except (OssError, ClientError) as e:
                raise StoreError(f"oss delete in {self.bucket} failed: {_describe(e)}") from e
            deleted += len(batch)
        return deleted

    async def _pages(self, prefix: str):
        """The full keys under ``prefix``, a listing page at a time."""
        check_prefix(prefix)
        full_prefix = self.prefix + prefix
        token = ""
        while True:
            try:
                page = await self._call(
                    self._bucket.list_objects_v2,
                    prefix=full_prefix,
                    continuation_token=token,
                    max_keys=_LIST_PAGE_MAX,
                )
            except (OssError, ClientError) as e:
                raise StoreError(
                    f"oss list {self.bucket}/{full_prefix} failed: {_describe(e)}"
                ) from e
            yield [obj.key for obj in page.object_list]
            if not page.is_truncated:
                return
            token = page.next_continuation_token

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _describe(e: Exception) -> str:
    if isinstance(e, RequestError):
        return f"transport error: {e}"
    if isinstance(e, OssError):
        return f"{e.status} {e.code}: {e.message} (request {e.request_id})"
    return str(e)
