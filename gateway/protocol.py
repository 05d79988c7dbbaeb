"""HTTP <-> core translation for the Open Inference Protocol. Nothing else sees HTTP types."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from vmpool.artifact import ModelConfig
from vmpool.codec import CodecError, InferRequest, decode_request, encode_response

from .errors import BadRequest, PayloadTooLarge

HEADER_LENGTH = "inference-header-content-length"
JSON_TYPE = "application/json"


async def read_body(request: Request, limit_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
        if size > limit_bytes:
            raise PayloadTooLarge(f"request body of {size} bytes is over the limit of "
                                  f"{limit_bytes} bytes")
        return await request.body()
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def header_length(request: Request) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {raw!r}") from None
    return value


def decode_infer(body: bytes, hl: int | None) -> InferRequest:
    try:
        return decode_request(body, hl)
    except CodecError as exc:
        raise BadRequest(str(exc), getattr(exc, "status", 400)) from None


def infer_response(cfg: ModelConfig, req: InferRequest, outputs, headers: dict) -> Response:
    body, hl = encode_response(model_name=cfg.name, model_version=cfg.version, request_id=req.id,
                               outputs=outputs, requested=req.outputs,
                               binary_output=req.binary_output)
    if hl is not None:
        headers["Inference-Header-Content-Length"] = str(hl)
        return Response(body, media_type="application/octet-stream", headers=headers)
    return Response(body, media_type=JSON_TYPE, headers=headers)


def model_metadata(cfg: ModelConfig) -> dict:
    return {
        "name": cfg.name,
        "versions": [cfg.version],
        "platform": cfg.platform,
        "inputs": [t.to_dict() for t in cfg.inputs],
        "outputs": [t.to_dict() for t in cfg.outputs],
    }
