"""The binary half of the V2 REST codec: the tensor extension's raw bytes after the JSON header.

The header's length travels in ``Inference-Header-Content-Length``; each binary tensor carries
``parameters.binary_data_size`` and its bytes follow in entry order, little-endian, row-major.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson

from vmpool.wire import BF16, HEADER_LENGTH, CodecError, datatype_of

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def split_body(body: bytes, header_length: int | None) -> tuple[dict, memoryview]:
    """The parsed JSON header and the binary bytes that follow it."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise CodecError("request body must be bytes")
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    else:
        if isinstance(header_length, bool) or not isinstance(header_length, int):
            raise CodecError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}")
        if header_length < 0 or header_length > len(view):
            raise CodecError(
                f"{HEADER_LENGTH} is {header_length} but the body has {len(view)} bytes"
            )
        header, binary = view[:header_length], view[header_length:]
    try:
        obj = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        obj = _with_nonfinite(header)
        if obj is None:
            raise CodecError(f"malformed JSON: {exc}{_where(header_length, str(exc))}") from None
    if not isinstance(obj, dict):
        raise CodecError("the JSON body must be an object")
    return obj, binary


def _where(header_length: int | None, error: str) -> str:
    """Which bytes were read as the JSON header, for its error: raw tensor bytes read as JSON
    said only "str is not valid UTF-8: surrogates not allowed"."""
    if header_length is not None:
        return f" (the body's first {header_length} bytes, as {HEADER_LENGTH} says)"
    if "UTF-8" in error:  # binary bytes, likely: sent without their header's length
        return f" (binary tensors need the {HEADER_LENGTH} header)"
    return ""


def _with_nonfinite(header: memoryview) -> object | None:
    """``header`` parsed with the NaN, Infinity and -Infinity tokens Python's ``json.dumps``
    writes (tritonclient's JSON tensors carry them; Triton reads them), None if it is not JSON
    even so, or if it holds what orjson refuses besides (a lone surrogate, an integer past 64
    bits). Only a body orjson refused and that holds such a token is parsed again."""
    raw = bytes(header)
    if b"NaN" not in raw and b"Infinity" not in raw:
        return None
    try:
        obj = json.loads(raw)
        orjson.dumps(obj)  # what orjson would have refused besides: a lone surrogate in a string
    except (ValueError, TypeError, RecursionError, orjson.JSONEncodeError):
        return None
    return obj


def binary_tensor(
    binary: memoryview,
    offset: int,
    size: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    label: str,
    datatype: str,
) -> np.ndarray:
    """The tensor of ``size`` bytes at ``offset`` (a zero-copy view); CodecError if it does not
    match ``shape`` or runs past the body."""
    need = math.prod(shape) * dtype.itemsize
    if size != need:
        raise CodecError(
            f"{label}: binary_data_size is {size} bytes but shape "
            f"{list(shape)} of {datatype} needs {need}"
        )
    if offset + size > len(binary):
        raise CodecError(
            f"{label}: binary data runs past the end of the body "
            f"({len(binary)} binary bytes, need {offset + size})"
        )
    return np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)


def binary_entry(name: str, array: np.ndarray, chunks: list) -> dict:
    """A tensor entry sent as binary data; appends its bytes to ``chunks``."""
    data = le_contiguous(array)
    # (a bfloat16 array has no buffer format: memoryview() refuses it; its bits as uint16 do)
    chunks.append(data.view(np.uint16) if data.dtype == BF16 else data)
    return {
        "name": name,
        "datatype": datatype_of(array),
        "shape": list(array.shape),
        "parameters": {"binary_data_size": data.nbytes},
    }


def le_contiguous(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def join(header: dict, chunks: list[np.ndarray]) -> tuple[bytes, int]:
    """The body (JSON header then binary chunks) and the header's length."""
    head = orjson.dumps(header, option=_JSON_OPTS)
    if not chunks:
        return head, len(head)
    return b"".join([head, *chunks]), len(head)  # contiguous arrays expose their raw bytes
