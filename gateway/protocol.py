"""HTTP <-> core translation for the Open Inference Protocol. Nothing else sees HTTP types.

The infer endpoint is served at the ASGI level (no FastAPI routing or dependency machinery on
the hot path); these helpers read the body, and build and send the response.
"""

from __future__ import annotations

import orjson

from vmpool.artifact import ModelConfig
from vmpool.codec import CodecError, InferRequest, decode_request, encode_response

from .errors import BadRequest, PayloadTooLarge

HEADER_LENGTH = "inference-header-content-length"
JSON_TYPE = "application/json"


async def read_body(receive, headers: dict[str, str], limit_bytes: int) -> bytes:
    """The request body from an ASGI ``receive``; 413 past ``limit_bytes`` (declared or not)."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
        if size > limit_bytes:
            raise PayloadTooLarge(f"request body of {size} bytes is over the limit of "
                                  f"{limit_bytes} bytes")
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit_bytes:
                raise PayloadTooLarge(f"request body is over the limit of {limit_bytes} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before sending its whole request."""


def header_length(headers: dict[str, str]) -> int | None:
    raw = headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {raw!r}") from None


def decode_infer(body: bytes, hl: int | None) -> InferRequest:
    try:
        return decode_request(body, hl)
    except CodecError as exc:
        raise BadRequest(str(exc), getattr(exc, "status", 400)) from None


def infer_response(cfg: ModelConfig, req: InferRequest, outputs,
                   headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (content type, binary header length added)."""
    body, hl = encode_response(model_name=cfg.name, model_version=cfg.version, request_id=req.id,
                               outputs=outputs, requested=req.outputs,
                               binary_output=req.binary_output)
    if hl is not None:
        headers["inference-header-content-length"] = str(hl)
        headers["content-type"] = "application/octet-stream"
    else:
        headers["content-type"] = JSON_TYPE
    return body, headers


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def send_response(send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def model_metadata(cfg: ModelConfig) -> dict:
    return {
        "name": cfg.name,
        "versions": [cfg.version],
        "platform": cfg.platform,
        "inputs": [t.to_dict() for t in cfg.inputs],
        "outputs": [t.to_dict() for t in cfg.outputs],
    }
