"""Open Inference Protocol v2 (KServe V2) REST codec: JSON tensors and the binary tensor extension.

Binary tensors follow the JSON header in the body; the header's length travels in the
``Inference-Header-Content-Length`` HTTP header and each binary tensor carries
``parameters.binary_data_size``. Tensors are little-endian, row-major. This module turns bodies
into numpy arrays and back; it knows nothing of HTTP frameworks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import orjson

from vmpool.validation import validate_inputs
from vmpool.wire import (
    HEADER_LENGTH,
    KIND_WORDS,
    CodecError,
    datatype_of,
    error_body,
    numpy_dtype,
    parse_header_length,
)

__all__ = [
    "HEADER_LENGTH",
    "CodecError",
    "InferRequest",
    "InferResponse",
    "RequestedOutput",
    "datatype_of",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_request",
    "encode_response",
    "numpy_dtype",
    "parse_header_length",
    "validate_inputs",
]

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None  # None: follow the request-level binary_data_output


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None  # None: every output of the model
    binary_output: bool = False
    parameters: dict = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    model_version: str | None
    id: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict = field(default_factory=dict)


# ---------------------------------------------------------------- decoding


def _split_body(body: bytes, header_length: int | None) -> tuple[dict, memoryview]:
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
        raise CodecError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CodecError("the JSON body must be an object")
    return obj, binary


def _shape(raw, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise CodecError(f"{where}: 'shape' must be a list of non-negative integers")
    for d in raw:
        if isinstance(d, bool) or not isinstance(d, int):
            raise CodecError(
                f"{where}: 'shape' must be a list of non-negative integers, got {raw!r}"
            )
        if d < 0:
            raise CodecError(f"{where}: negative dimension in shape {raw!r}")
    return tuple(raw)


def _json_array(data, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]  # a scalar stands for a one-element tensor
    count = math.prod(shape)
    if data and isinstance(data[0], list):
        flat = _flatten(data, shape, where)
    elif len(data) != count:
        raise CodecError(
            f"{where}: 'data' has {len(data)} elements but shape {list(shape)} needs {count}"
        )
    else:
        flat = data
    try:
        if dtype.kind == "f":
            # fromiter on a flat sequence is several times faster than asarray on nested lists
            array = np.fromiter(flat, dtype=dtype, count=count)
        else:
            # Parse without a dtype first so 1.5 in an INT32 tensor is an error, not a truncation.
            raw = np.asarray(flat if isinstance(flat, list) else list(flat))
            if raw.size and not _json_kind_ok(raw.dtype.kind, dtype.kind):
                got = KIND_WORDS.get(raw.dtype.kind, "non-numeric")
                raise CodecError(f"{where} is {datatype_of(dtype)} but 'data' holds {got} values")
            if dtype.kind in "iu" and raw.size:
                info = np.iinfo(dtype)
                if raw.min() < info.min or raw.max() > info.max:
                    raise CodecError(f"{where}: 'data' value out of range for {dtype.name}")
            array = raw.astype(dtype, copy=False)
    except CodecError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"{where}: 'data' is not a list of numbers ({exc})") from None
    if array.size != count:  # e.g. a list hiding inside a flat list of integers
        raise CodecError(
            f"{where}: 'data' has {array.size} elements but shape {list(shape)} needs {count}"
        )
    return array.reshape(shape)


def _flatten(data: list, shape: tuple[int, ...], where: str):
    """Nested lists must follow ``shape`` level by level; returns an iterator of the leaves."""
    level = [data]
    for depth, dim in enumerate(shape):
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                raise CodecError(
                    f"{where}: nested 'data' does not follow shape {list(shape)} at depth {depth}"
                )
        if depth == len(shape) - 1:
            return itertools.chain.from_iterable(level)
        level = list(itertools.chain.from_iterable(level))
    raise CodecError(f"{where}: nested 'data' for a scalar shape []")


def _json_kind_ok(got: str, want: str) -> bool:
    if want == "b":
        return got == "b"
    return got in "iu"  # integer tensors take integers only (not floats, not booleans)


def _tensors(entries, binary: memoryview, where: str) -> dict[str, np.ndarray]:
    if not isinstance(entries, list):
        raise CodecError(f"'{where}s' must be a list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CodecError(f"{where} #{i} must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise CodecError(f"{where} #{i}: 'name' must be a non-empty string")
        label = f"{where} {name!r}"
        if name in tensors:
            raise CodecError(f"{label} appears twice")
        if "shape" not in entry or "datatype" not in entry:
            raise CodecError(f"{label}: needs 'shape' and 'datatype'")
        shape = _shape(entry["shape"], label)
        dtype = numpy_dtype(entry["datatype"], label)
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise CodecError(f"{label}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise CodecError(f"{label}: binary_data_size must be a non-negative integer")
            if "data" in entry:
                raise CodecError(f"{label}: has both 'data' and binary_data_size")
            need = math.prod(shape) * dtype.itemsize
            if size != need:
                raise CodecError(
                    f"{label}: binary_data_size is {size} bytes but shape "
                    f"{list(shape)} of {entry['datatype']} needs {need}"
                )
            if offset + size > len(binary):
                raise CodecError(
                    f"{label}: binary data runs past the end of the body "
                    f"({len(binary)} binary bytes, need {offset + size})"
                )
            tensors[name] = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(
                shape
            )
            offset += size
        elif "data" in entry:
            tensors[name] = _json_array(entry["data"], dtype, shape, label)
        else:
            raise CodecError(f"{label}: has neither 'data' nor parameters.binary_data_size")
    if offset != len(binary):
        raise CodecError(
            f"body has {len(binary) - offset} bytes after the JSON header that no tensor claims"
        )
    return tensors


def _requested_outputs(raw) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise CodecError("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CodecError(f"requested output #{i} must be an object with a string 'name'")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise CodecError(f"requested output {entry['name']!r}: 'parameters' must be an object")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise CodecError(f"requested output {entry['name']!r}: binary_data must be a boolean")
        if any(r.name == entry["name"] for r in requested):
            raise CodecError(f"requested output {entry['name']!r} appears twice")
        requested.append(RequestedOutput(entry["name"], binary))
    return requested


def _optional_str(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CodecError(f"'{key}' must be a string")
    return value


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an infer request body; CodecError(400) for anything that is not a valid request."""
    obj, binary = _split_body(body, header_length)
    if "inputs" not in obj:
        raise CodecError("request needs 'inputs'")
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise CodecError("'parameters' must be an object")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise CodecError("binary_data_output must be a boolean")
    inputs = _tensors(obj["inputs"], binary, "input")
    if not inputs:
        raise CodecError("request has no inputs")
    return InferRequest(
        id=_optional_str(obj, "id"),
        inputs=inputs,
        outputs=_requested_outputs(obj.get("outputs")),
        binary_output=binary_output,
        parameters=params,
    )


def decode_response(body: bytes, header_length: int | None) -> InferResponse:
    """Decode an infer response body. An ``{"error": ...}`` body raises CodecError(502)."""
    obj, binary = _split_body(body, header_length)
    if "outputs" not in obj:
        if isinstance(obj.get("error"), str):
            raise CodecError(f"upstream error: {obj['error']}", status=502)
        raise CodecError("response needs 'outputs'", status=502)
    try:
        outputs = _tensors(obj["outputs"], binary, "output")
        name = obj.get("model_name")
        return InferResponse(
            model_name=name if isinstance(name, str) else "",
            model_version=_optional_str(obj, "model_version"),
            id=_optional_str(obj, "id"),
            outputs=outputs,
            parameters=obj.get("parameters") or {},
        )
    except CodecError as exc:
        raise CodecError(f"malformed response: {exc.message}", status=502) from None


# ---------------------------------------------------------------- encoding


def _binary_entry(name: str, array: np.ndarray, chunks: list) -> dict:
    data = _le_contiguous(array)
    chunks.append(data)
    return {
        "name": name,
        "datatype": datatype_of(array),
        "shape": list(array.shape),
        "parameters": {"binary_data_size": data.nbytes},
    }


def _le_contiguous(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def _join(header: dict, chunks: list[np.ndarray]) -> tuple[bytes, int]:
    head = orjson.dumps(header, option=_JSON_OPTS)
    if not chunks:
        return head, len(head)
    return b"".join([head, *chunks]), len(head)  # contiguous arrays expose their raw bytes


def encode_request(
    inputs: dict[str, np.ndarray],
    *,
    outputs: list[str] | None = None,
    binary_output: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, int]:
    """An infer request with every input as binary data; returns (body, JSON header length)."""
    chunks: list[np.ndarray] = []
    header: dict = {"inputs": [_binary_entry(n, np.asarray(a), chunks) for n, a in inputs.items()]}
    if request_id is not None:
        header["id"] = request_id
    if outputs is None:
        header["parameters"] = {"binary_data_output": binary_output}
    else:
        header["outputs"] = [
            {"name": n, "parameters": {"binary_data": binary_output}} for n in outputs
        ]
    return _join(header, chunks)


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    requested: list[RequestedOutput] | None,
    binary_output: bool,
) -> tuple[bytes, int | None]:
    """An infer response; returns (body, header length, or None when every tensor is JSON)."""
    if requested is None:
        requested = [RequestedOutput(name, None) for name in outputs]
    chunks: list[np.ndarray] = []
    entries = []
    for r in requested:
        array = outputs.get(r.name)
        if array is None:
            raise CodecError(f"no output named {r.name!r}")
        array = np.asarray(array)
        if binary_output if r.binary is None else r.binary:
            entries.append(_binary_entry(r.name, array, chunks))
        else:
            data = _le_contiguous(array)
            entries.append(
                {
                    "name": r.name,
                    "datatype": datatype_of(array),
                    "shape": list(array.shape),
                    "data": data.reshape(-1),
                }
            )
    header: dict = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if request_id is not None:
        header["id"] = request_id
    header["outputs"] = entries
    body, length = _join(header, chunks)
    return body, (length if chunks else None)


encode_error = error_body  # the protocol's error body: ``{"error": "..."}``
