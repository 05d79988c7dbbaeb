"""One pooled aioboto3 client per AWS service, opened on first use: the set-up S3, SQS and Lambda
share (credentials, region, endpoint, pool, timeouts), and which of their errors are transient.

Callers that retry with ``burst.retry`` turn botocore's own retries off (``botocore_attempts=1``),
so an attempt is counted once and backoff has one owner.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

_THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
}
_TRANSIENT = (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError, ConnectionClosedError)


def transient_error(exc: BaseException, attempt: int) -> bool:
    """A ``burst.retry`` predicate: AWS's 5xx and throttling answers, and a connection that
    failed or went silent."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _THROTTLE_CODES
    return isinstance(exc, _TRANSIENT)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ``ClientError`` ("NoSuchKey", "ThrottlingException", ...)."""
    return exc.response.get("Error", {}).get("Code", "")


class AwsClient:
    """The client of one service (``"s3"``, ``"sqs"``, ``"lambda"``), kept open until ``close``.

    Settings left None keep botocore's defaults; ``botocore_attempts=None`` keeps botocore's own
    retries (for callers that do not retry themselves).
    """

    def __init__(
        self,
        service: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        max_pool_connections: int | None = None,
        connect_timeout_s: float | None = None,
        read_timeout_s: float | None = None,
        botocore_attempts: int | None = 1,
    ):
        self.service = service
        self.endpoint_url = endpoint_url
        self._session = aioboto3.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            region_name=region,
        )
        config: dict[str, Any] = {
            "max_pool_connections": max_pool_connections,
            "connect_timeout": connect_timeout_s,
            "read_timeout": read_timeout_s,
        }
        if botocore_attempts is not None:
            config["retries"] = {"mode": "standard", "total_max_attempts": botocore_attempts}
        self._config = AioConfig(**{k: v for k, v in config.items() if v is not None})
        self._client_cm: Any = None
        self._client: Any = None
        self._open_lock = asyncio.Lock()

    async def client(self) -> Any:
        """The open client (opened by the first caller; concurrent first callers share it)."""
        if self._client is None:
            async with self._open_lock:
                if self._client is None:
                    cm = self._session.client(
                        self.service, endpoint_url=self.endpoint_url, config=self._config
                    )
                    self._client = await cm.__aenter__()
                    self._client_cm = cm
        return self._client

    async def close(self) -> None:
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)
