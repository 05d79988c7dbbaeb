"""A gRPC call's metadata as the handlers read it: text values as HTTP headers are read, a
repeated key refused as a repeated header is, and the call's request id."""

from __future__ import annotations

import uuid

from ..protocol import header_safe_id
from ..tenants import refuse_repeated_keys


def request_id_of(body_id: str, meta: dict[str, str]) -> str:
    """The message's id, else the x-request-id metadata's (if header-safe), else a new one."""
    return header_safe_id(body_id) or header_safe_id(meta.get("x-request-id")) or uuid.uuid4().hex


def metadata_of(context) -> dict[str, str]:
    """``text_metadata``, refused (400, INVALID_ARGUMENT) when a key comes twice: two
    ``authorization`` or ``x-api-key`` entries, as two such HTTP headers are."""
    refuse_repeated_keys(key for key, _ in context.invocation_metadata() or ())
    return text_metadata(context)


def text_metadata(context) -> dict[str, str]:
    """The call's text metadata, each value without surrounding whitespace, as an HTTP parser
    reads a header (an ``x-api-key`` of " key" was an unknown key over gRPC alone)."""
    return {k: v.strip() for k, v in context.invocation_metadata() or () if isinstance(v, str)}
