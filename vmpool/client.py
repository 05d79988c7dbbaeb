"""A pooled binary Open Inference Protocol client for the gateway -> replica hop.

Infer goes over ``vmpool.http1`` (keep-alive connections with httptools' parser: the gateway's
per-request CPU lives here). Not httpx: on this hop at concurrency 16-32 httpx's async pool spends
a core on its own bookkeeping (ops/bench/client_choice.py). aiohttp serves the rare calls
(the repository extension).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping

import aiohttp
import numpy as np

from .batch_report import BatchReport, parse_batch_report
from .codec import CodecError, decode_response, encode_request
from .codec_params import queue_timeout
from .coalesce import Coalescer
from .forward import WireInputs, WireOutputs, check_answer
from .http1 import ConnectFailed, ConnectionDropped, Http1Pool
from .wire import HEADER_LENGTH, HEADER_LENGTH_KEY, QUEUE_TIMEOUT_HEADER, parse_header_length

_HEADER_LENGTH_KEY = HEADER_LENGTH_KEY.encode()
_QUEUE_TIMEOUT_KEY = QUEUE_TIMEOUT_HEADER.encode()
_OCTETS = "application/octet-stream"


class ReplicaError(Exception):
    """A replica answered with an error (``status``) or could not be reached (``connect``)."""

    def __init__(
        self,
        message: str,
        status: int = 502,
        *,
        connect: bool = False,
        retryable: bool = False,
        expired: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.connect = connect  # the request never reached the replica: safe to send elsewhere
        self.retryable = retryable
        self.expired = expired  # its queue timeout ran out (a 503, not the replica's fault)


class ReplicaClient:
    def __init__(
        self, *, timeout_s: float = 30.0, connect_timeout_s: float = 2.0, max_connections: int = 256
    ):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._http = Http1Pool(connect_timeout_s=connect_timeout_s, max_idle=max_connections)
        # concurrent small calls to one replica and model ride in one request (vmpool.coalesce);
        # off until the gateway gives a model its largest batch (coalescer.set_max_rows)
        self.coalescer = Coalescer(self._infer_one)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=60,
                ttl_dns_cache=None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def infer(
        self,
        base_url: str,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        answer = await self.infer_reported(base_url, model, inputs, outputs, request_id, timeout_s)
        return answer[0]

    def infer_reported(
        self,
        base_url: str,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Awaitable[tuple[dict[str, np.ndarray], BatchReport | None]]:
        """``infer``, plus the batch the replica says it ran the request in (None: it did not
        say; ``vmpool.batch_report``). The coalescer's coroutine itself, not one around it (a
        level of coroutines costs each request on the way in and out)."""
        return self.coalescer.infer(base_url, model, inputs, outputs, request_id, timeout_s)

    async def _infer_one(
        self,
        base_url: str,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None,
        request_id: str | None,
        timeout_s: float | None,
    ) -> tuple[Mapping[str, np.ndarray], BatchReport | None]:
        forwarded = type(inputs) is WireInputs and outputs is None
        if forwarded:  # the client's own bytes (vmpool.forward); the id travels as a header
            body, header_length = inputs.body, inputs.header_length
            headers = {HEADER_LENGTH: str(header_length), "Content-Type": _OCTETS}
            if request_id is not None:
                headers["x-request-id"] = request_id
        else:
            body, header_length = encode_request(
                inputs,
                outputs=outputs,
                binary_output=True,
                request_id=request_id,
                parameters=queue_timeout(inputs),
            )
            headers = {HEADER_LENGTH: str(header_length), "Content-Type": _OCTETS}
        try:
            answer = await self._http.post(
                base_url, f"/v2/models/{model}/infer", body, headers, timeout_s or self._timeout_s
            )
        except ConnectFailed as exc:
            raise ReplicaError(
                f"cannot connect to replica {base_url}: {exc}", 503, connect=True, retryable=True
            ) from exc
        except TimeoutError as exc:
            raise ReplicaError(f"replica {base_url} did not answer in time", 504) from exc
        except (ConnectionDropped, OSError) as exc:
            raise ReplicaError(f"replica {base_url} failed: {exc}", 502) from exc
        if answer.status != 200:
            expired = _QUEUE_TIMEOUT_KEY in answer.headers
            raise ReplicaError(
                _error_text(answer.body, answer.status),
                answer.status,
                retryable=answer.status == 503 and not expired,
                expired=expired,
            )
        try:
            hl = parse_header_length(answer.headers.get(_HEADER_LENGTH_KEY))
            if forwarded and hl is not None:
                check_answer(answer.body, hl)
                decoded = WireOutputs(answer.body, hl)
            else:
                decoded = decode_response(answer.body, hl).outputs
        except CodecError as exc:
            raise ReplicaError(f"replica sent a malformed response: {exc}", 502) from exc
        return decoded, parse_batch_report(answer.headers)

    async def repository(self, base_url: str, model: str, action: str) -> None:
        """Ask a replica to ``load`` or ``unload`` a model (the repository extension)."""
        url = f"{base_url}/v2/repository/models/{model}/{action}"
        try:
            async with self._get_session().post(url, data=b"") as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise ReplicaError(_error_text(payload, resp.status), resp.status)
        except aiohttp.ClientError as exc:
            raise ReplicaError(f"replica {base_url} failed: {exc}", 502) from exc
        except asyncio.TimeoutError as exc:
            raise ReplicaError(f"replica {base_url} did not answer in time", 504) from exc

    def forget(self, base_url: str) -> None:
        """A replica that is gone: what the client kept for it (connections, batching state)."""
        self._http.forget(base_url)
        self.coalescer.forget(base_url)

    async def close(self) -> None:
        self._http.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_text(payload: bytes, status: int) -> str:
    import orjson

    try:
        return str(orjson.loads(payload)["error"])
    except Exception:
        return f"replica answered HTTP {status}"
