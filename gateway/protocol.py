"""HTTP <-> core translation for the Open Inference Protocol. Nothing else sees HTTP types.

The infer endpoint is served at the ASGI level (no FastAPI routing or dependency machinery on
the hot path); these helpers read the body, and build and send the response. The wire format
itself (header names, datatypes, error body, metadata documents) is ``vmpool.wire``.
"""

from __future__ import annotations

import asyncio
import re

from vmpool import body as body_reader
from vmpool.artifact import ModelConfig
from vmpool.body import BodyLease, ClientGone
from vmpool.codec import CodecError, DecodeCache, InferRequest, encode_answer
from vmpool.forward import WireOutputs, answer_prefix
from vmpool.wire import (
    HEADER_LENGTH_KEY,
    error_body,
    model_metadata,
    parse_header_length,
    too_large_message,
)

from .errors import TidegateError

__all__ = [
    "ClientGone",
    "decode_infer",
    "decode_infer_off_loop",
    "error_body",
    "header_length",
    "header_safe_id",
    "infer_response",
    "model_metadata",
    "read_body",
    "send_response",
]
JSON_TYPE = "application/json"
# A request id that may travel as an HTTP header or gRPC metadata value: visible ASCII and
# inner spaces, at most 256 characters. A body's "id" is the client's own text: a CR/LF in it
# would split the answer's headers (and the replica request's), so such an id stays in the
# body only and the headers carry the gateway's own.
_SAFE_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?")


def header_safe_id(value: str | None) -> str | None:
    """``value`` if it may be sent as a header value (``_SAFE_ID``), else None."""
    return value if value and _SAFE_ID.fullmatch(value) else None


def _as_error(exc: CodecError) -> TidegateError:
    return TidegateError(exc.message, exc.status, exc.headers)


async def read_body(
    receive,
    headers: dict[str, str],
    limit_bytes: int,
    lease: BodyLease | None = None,
    timeout_s: float | None = None,
) -> bytes:
    """The request body from an ASGI ``receive`` (413/503/408 as ``vmpool.body`` decides)."""
    # the fast lane's request whose body is all in already (gateway/fast_lane.py): no receive,
    # and no timer for a read that cannot wait
    ready = getattr(getattr(receive, "__self__", None), "ready_body", None)
    body = ready() if ready is not None else None
    try:
        if body is not None:
            if len(body) > limit_bytes:
                message = too_large_message(limit_bytes, len(body))
                raise TidegateError(message, 413, {"connection": "close"})
            if lease is not None and body:  # it counts in the budget as any body does
                lease.take(len(body))
        else:
            body = await body_reader.read_body(
                receive, headers.get("content-length"), limit_bytes, lease, timeout_s
            )
        encoding = headers.get("content-encoding")
        if encoding is None:
            return body
        return body_reader.decode_content(body, encoding, limit_bytes, lease)
    except CodecError as exc:
        raise _as_error(exc) from None


def header_length(headers: dict[str, str]) -> int | None:
    try:
        return parse_header_length(headers.get(HEADER_LENGTH_KEY))
    except CodecError as exc:
        raise _as_error(exc) from None


_DECODED = DecodeCache()  # clients repeat their request headers (vmpool.codec.DecodeCache)


def decode_infer(body: bytes, hl: int | None) -> InferRequest:
    try:
        return _DECODED.decode(body, hl)
    except CodecError as exc:
        raise _as_error(exc) from None


# A JSON header past this is decoded on a thread: a million one-element inputs (60 MB of JSON,
# within the body limit) held the event loop 18.8 s, every other client's health probe and
# answer waiting behind it; a 24 MB JSON batch of 8 images 0.29 s. The hop costs ~0.1 ms, under
# 2 % of decoding this much JSON; binary tensors after a small header stay on the loop.
OFF_LOOP_JSON_BYTES = 1 << 20


async def decode_infer_off_loop(body: bytes, hl: int | None) -> InferRequest:
    """``decode_infer``, on a thread when the body's JSON is large (OFF_LOOP_JSON_BYTES)."""
    json_bytes = len(body) if hl is None else hl
    if json_bytes <= OFF_LOOP_JSON_BYTES:
        return decode_infer(body, hl)
    return await asyncio.to_thread(decode_infer, body, hl)


def infer_response(
    cfg: ModelConfig, req: InferRequest, outputs, headers: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (content type, binary header length added). A
    replica's answer forwarded as its bytes (``vmpool.forward``) goes back as it came."""
    if type(outputs) is WireOutputs and outputs.answers(answer_prefix(cfg.name, cfg.version)):
        body, hl = outputs.body, outputs.header_length
    else:
        body, hl = encode_answer(cfg, req, outputs)
    if hl is not None:
        headers[HEADER_LENGTH_KEY] = str(hl)
        headers["content-type"] = "application/octet-stream"
    else:
        headers["content-type"] = JSON_TYPE
    return body, headers


async def send_response(send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
