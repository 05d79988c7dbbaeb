"""LambdaInvoker: synchronous AWS Lambda invocations through aioboto3 (real SigV4 signing).

One client stays open for the invoker's life. Throttling is retried with bounded exponential
backoff; a function error never is (the function ran, and may have had effects).
"""

from __future__ import annotations

import asyncio

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError

from burst.aws import AwsClient
from burst.faas.base import InvokeError, InvokeErrorKind, InvokeResult
from burst.faas.lambda_wire import (
    api_error,
    decode_log_result,
    function_error,
    parse_report,
    retry_invoke_on,
)
from burst.retry import RetryPolicy, with_retries

_CONFIG_KEYS = {
    "kind",
    "region",
    "endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "qualifier",
    "max_pool_connections",
    "timeout_s",
    "throttle_retries",
    "throttle_backoff_max_s",
}


def _is_retryable(exc: BaseException, attempt: int) -> bool:
    """Lambda's retryable errors (``retry_invoke_on``), or a pooled keep-alive connection that
    turned out closed (seen under CPU load after a throttle backoff). Tidegate's handlers are
    idempotent (outputs go to per-request keys), so sending the invocation again is safe; other
    transport errors are not retried."""
    return retry_invoke_on(exc, attempt) or (
        isinstance(exc, InvokeError)
        and exc.kind is InvokeErrorKind.TRANSPORT
        and isinstance(exc.__cause__, ConnectionClosedError)
    )


class LambdaInvoker:
    """Invokes AWS Lambda functions (RequestResponse, LogType Tail) and bills from REPORT."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        qualifier: str | None = None,
        max_pool_connections: int = 64,
        timeout_s: float = 900,
        throttle_retries: int = 4,
        throttle_backoff_max_s: float = 2.0,
    ):
        if max_pool_connections < 1 or timeout_s <= 0 or throttle_retries < 0:
            raise ValueError("max_pool_connections >= 1, timeout_s > 0, throttle_retries >= 0")
        self.region, self.endpoint_url = region, endpoint_url
        self.qualifier = qualifier
        self.throttle_retries = throttle_retries
        self.throttle_backoff_max_s = throttle_backoff_max_s
        # botocore's own retries off: only throttling is retried, and only here
        self._aws = AwsClient(
            "lambda",
            region=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            max_pool_connections=max_pool_connections,
            connect_timeout_s=10,
            read_timeout_s=timeout_s,
        )

    @classmethod
    def from_config(cls, cfg: dict) -> "LambdaInvoker":
        """``{"kind": "aws_lambda", "region": ..., "endpoint_url": ..., ...}`` (constructor
        keywords)."""
        unknown = set(cfg) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown aws_lambda invoker settings: {sorted(unknown)}")
        return cls(**{k: v for k, v in cfg.items() if k != "kind"})

    async def _get_client(self):
        return await self._aws.client()

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        policy = RetryPolicy(
            attempts=self.throttle_retries + 1, backoff_max_s=self.throttle_backoff_max_s
        )
        return await with_retries(
            lambda: self._invoke_once(function, payload),
            _is_retryable,
            policy,
            what=f"invoke {function}",
        )

    async def _invoke_once(self, function: str, payload: bytes) -> InvokeResult:
        client = await self._get_client()
        kwargs = {
            "FunctionName": function,
            "InvocationType": "RequestResponse",
            "LogType": "Tail",
            "Payload": payload,
        }
        if self.qualifier:
            kwargs["Qualifier"] = self.qualifier
        try:
            resp = await client.invoke(**kwargs)
            async with resp["Payload"] as stream:
                body = await stream.read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise api_error(function, status, err.get("Code", ""), err.get("Message", "")) from exc
        except (BotoCoreError, asyncio.TimeoutError, OSError) as exc:
            raise InvokeError(
                f"{function}: transport error: {exc!r}", kind=InvokeErrorKind.TRANSPORT
            ) from exc
        billing = parse_report(decode_log_result(resp.get("LogResult")))
        if resp.get("FunctionError"):
            raise function_error(function, body, billing)
        return InvokeResult(payload=body, billing=billing)

    async def close(self) -> None:
        await self._aws.close()
