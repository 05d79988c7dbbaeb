"""Object store on Amazon S3 (or any S3-compatible server) through aioboto3."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from burst.aws import AwsClient, error_code, transient_error
from burst.retry import RetryPolicy, with_retries
from burst.store.base import PagedPrefixes, StoreError, check_key, check_prefix

_DELETE_BATCH_MAX = 1000  # DeleteObjects accepts at most 1000 keys per call
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class S3Store(PagedPrefixes):
    """Bytes under ``prefix`` + key in one bucket. One pooled client, opened on first use.

    Throttling, 5xx, connection errors and answers slower than ``read_timeout_s`` are retried
    with backoff (``burst.retry``); 4xx errors are not. Past ``max_attempts`` a StoreError says
    what failed. An endpoint that takes no connection fails in ``max_attempts`` x
    ``connect_timeout_s`` (3 s: a TCP connect to S3 takes milliseconds) plus backoff, about 17 s
    at the defaults, with one line naming the endpoint (botocore's own 60 s per attempt is off).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        max_pool_connections: int = 64,
        max_attempts: int = 5,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
        retry_backoff_max_s: float = 2.0,
    ):
        if not bucket:
            raise ValueError("S3Store needs a bucket name")
        if prefix:
            check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self._aws = AwsClient(
            "s3",
            region=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            max_pool_connections=max_pool_connections,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )
        self.retry = RetryPolicy(attempts=max_attempts, backoff_max_s=retry_backoff_max_s)

    @classmethod
    def from_config(cls, cfg: dict) -> "S3Store":
        """``{"kind": "s3", "bucket": ..., "prefix"?, "region"?, "endpoint_url"?, ...}``."""
        if not cfg.get("bucket"):
            raise ValueError("s3 store config needs 'bucket'")
        known = {
            "prefix",
            "region",
            "endpoint_url",
            "aws_access_key_id",
            "aws_secret_access_key",
            "max_pool_connections",
            "max_attempts",
            "connect_timeout_s",
            "read_timeout_s",
            "retry_backoff_max_s",
        }
        return cls(cfg["bucket"], **{k: v for k, v in cfg.items() if k in known})

    async def _s3(self) -> Any:
        return await self._aws.client()

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _retried(self, call, what: str):
        return await with_retries(call, transient_error, self.retry, what=what)

    async def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        s3 = await self._s3()
        try:
            await self._retried(
                lambda: s3.put_object(Bucket=self.bucket, Key=full, Body=data), f"s3 put {full}"
            )
        except (ClientError, BotoCoreError) as e:
            raise StoreError(f"s3 put {self.bucket}/{full} failed after retries: {e}") from e

    async def get(self, key: str) -> bytes:
        full = self._full(key)
        s3 = await self._s3()

        async def get_once() -> bytes:
            resp = await s3.get_object(Bucket=self.bucket, Key=full)
            async with resp["Body"] as stream:
                return await stream.read()

        try:
            return await self._retried(get_once, f"s3 get {full}")
        except ClientError as e:
            if error_code(e) in _MISSING_CODES:
                raise StoreError(f"no such key: {key}", missing=True) from None
            raise StoreError(f"s3 get {self.bucket}/{full} failed after retries: {e}") from e
        except BotoCoreError as e:
            raise StoreError(f"s3 get {self.bucket}/{full} failed after retries: {e}") from e

    async def delete(self, keys: list[str]) -> None:
        full = [self._full(k) for k in keys]  # validate all before deleting any
        await self._delete_full(full)

    async def _delete_full(self, full_keys: list[str]) -> int:
        s3 = await self._s3()
        deleted = 0
        for i in range(0, len(full_keys), _DELETE_BATCH_MAX):
            batch = full_keys[i : i + _DELETE_BATCH_MAX]
            try:
                resp = await self._retried(
                    lambda batch=batch: s3.delete_objects(
                        Bucket=self.bucket,
                        Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                    ),
                    "s3 delete",
                )
            except (ClientError, BotoCoreError) as e:
                raise StoreError(f"s3 delete in {self.bucket} failed: {e}") from e
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(
                    f"s3 delete in {self.bucket} failed for {len(errors)} keys, "
                    f"first {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(batch)
        return deleted

    async def _pages(self, prefix: str):
        """The full keys under ``prefix``, a listing page at a time."""
        check_prefix(prefix)
        s3 = await self._s3()
        full_prefix = self.prefix + prefix
        token: dict[str, str] = {}
        while True:
            try:
                page = await self._retried(
                    lambda token=token: s3.list_objects_v2(
                        Bucket=self.bucket, Prefix=full_prefix, **token
                    ),
                    f"s3 list {full_prefix}",
                )
            except (ClientError, BotoCoreError) as e:
                raise StoreError(
                    f"s3 list {self.bucket}/{full_prefix} failed after retries: {e}"
                ) from e
            yield [obj["Key"] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    async def close(self) -> None:
        await self._aws.close()
