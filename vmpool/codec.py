"""Open Inference Protocol v2 (KServe V2) REST codec: JSON tensors and the binary tensor extension.

Binary tensors follow the JSON header in the body; the header's length travels in the
``Inference-Header-Content-Length`` HTTP header and each binary tensor carries
``parameters.binary_data_size``. Tensors are little-endian, row-major. This module turns bodies
into numpy arrays and back; it knows nothing of HTTP frameworks. The JSON ``data`` lists are
parsed in ``codec_json``, the binary extension's bytes handled in ``codec_binary``; this module
holds the request/response shapes and walks their entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vmpool.classify import batched_outputs, classes_entry, classes_of
from vmpool.codec_binary import binary_entry, binary_tensor, join, le_contiguous, split_body
from vmpool.codec_json import json_array, json_entry
from vmpool.codec_params import check_json_parameters
from vmpool.validation import validate_inputs
from vmpool.wire import (
    HEADER_LENGTH,
    CodecError,
    datatype_of,
    error_body,
    numpy_dtype,
    optional_str,
    parse_header_length,
    refuse_impossible_shape,
    refuse_shared_memory,
)

__all__ = [
    "HEADER_LENGTH",
    "CodecError",
    "DecodeCache",
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


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None  # None: follow the request-level binary_data_output
    classes: int = 0  # the classification extension's top-k (0: the tensor itself)


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
    shape = tuple(raw)
    refuse_impossible_shape(shape, where)
    return shape


def _tensors(entries, binary: memoryview, where: str) -> dict[str, np.ndarray]:
    if not isinstance(entries, list):
        raise CodecError(f"'{where}s' must be a list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(entries):
        name, label = _entry_name(entry, i, where)
        if name in tensors:
            raise CodecError(f"{label} appears twice")
        array, size = _tensor(entry, label, binary, offset)
        tensors[name] = array
        offset += size
    if offset != len(binary):
        raise CodecError(
            f"body has {len(binary) - offset} bytes after the JSON header that no tensor claims"
        )
    return tensors


def _entry_name(entry, i: int, where: str) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise CodecError(f"{where} #{i} must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CodecError(f"{where} #{i}: 'name' must be a non-empty string")
    return name, f"{where} {name!r}"


def _tensor(entry: dict, label: str, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    """One entry's tensor and how many binary bytes (from ``offset``) it took."""
    if "shape" not in entry or "datatype" not in entry:
        raise CodecError(f"{label}: needs 'shape' and 'datatype'")
    shape = _shape(entry["shape"], label)
    dtype = numpy_dtype(entry["datatype"], label)
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise CodecError(f"{label}: 'parameters' must be an object")
    refuse_shared_memory(params, label)
    size = params.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CodecError(f"{label}: binary_data_size must be a non-negative integer")
        if "data" in entry:
            raise CodecError(f"{label}: has both 'data' and binary_data_size")
        array = binary_tensor(binary, offset, size, shape, dtype, label, entry["datatype"])
        return array, size
    if "data" in entry:
        return json_array(entry["data"], dtype, shape, label), 0
    raise CodecError(f"{label}: has neither 'data' nor parameters.binary_data_size")


def _requested_outputs(raw) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise CodecError("'outputs' must be a list")
    requested: list[RequestedOutput] = []
    names: set[str] = set()  # (a scan of ``requested`` per entry: 300k outputs took hours)
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CodecError(f"requested output #{i} must be an object with a string 'name'")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise CodecError(f"requested output {entry['name']!r}: 'parameters' must be an object")
        refuse_shared_memory(params, f"requested output {entry['name']!r}", output=True)
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise CodecError(f"requested output {entry['name']!r}: binary_data must be a boolean")
        if entry["name"] in names:
            raise CodecError(f"requested output {entry['name']!r} appears twice")
        names.add(entry["name"])
        requested.append(RequestedOutput(entry["name"], binary, classes_of(entry["name"], params)))
    return requested or None  # [] asks for none in particular: every output, as Triton and gRPC


class DecodeCache:
    """Request headers decoded before, by their bytes: a client sends the same JSON header
    (names, datatypes, shapes, sizes) again and again, and only the tensor bytes after it
    differ. For a header whose every input is binary it keeps the request's fields and each
    tensor's layout, so a repeat is one dict lookup and a view per tensor (the full decode was
    a sixth of the gateway's CPU per request on ``mlp``, in cProfile). Bounded: emptied when
    ``max_entries`` headers are held (clients that put a fresh ``id`` in each header miss)."""

    MAX_HEADER_BYTES = 4096

    def __init__(self, max_entries: int = 256):
        self.max_entries = max_entries
        self._plans: dict[bytes, tuple] = {}

    def decode(self, body: bytes, header_length: int | None) -> InferRequest:
        """``decode_request(body, header_length)``, from the cache when the header repeats."""
        if header_length is None or type(body) is not bytes or not 0 < header_length <= len(body):
            return decode_request(body, header_length)
        key = body[:header_length]
        plan = self._plans.get(key)
        if plan is not None and len(body) - header_length == plan[5]:
            request_id, outputs, binary_output, params, layout, _ = plan
            inputs = {
                name: np.frombuffer(body, dtype, count, header_length + offset).reshape(shape)
                for name, dtype, count, offset, shape in layout
            }
            return InferRequest(
                request_id,
                inputs,
                None if outputs is None else list(outputs),
                binary_output,
                dict(params),
            )
        req = decode_request(body, header_length)
        if header_length <= self.MAX_HEADER_BYTES:
            self._remember(key, req, len(body) - header_length)
        return req

    def _remember(self, key: bytes, req: InferRequest, binary_bytes: int) -> None:
        layout, offset = [], 0
        for name, array in req.inputs.items():
            if array.nbytes == 0:
                return  # (a JSON or empty tensor: decoded in full every time)
            layout.append((name, array.dtype, array.size, offset, array.shape))
            offset += array.nbytes
        if offset != binary_bytes:  # an input sent as a JSON list
            return
        if len(self._plans) >= self.max_entries:
            self._plans.clear()
        outputs = None if req.outputs is None else tuple(req.outputs)
        plan = (req.id, outputs, req.binary_output, dict(req.parameters), tuple(layout), offset)
        self._plans[key] = plan


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an infer request body; CodecError(400) for anything that is not a valid request."""
    obj, binary = split_body(body, header_length)
    if "inputs" not in obj:
        raise CodecError("request needs 'inputs'")
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise CodecError("'parameters' must be an object")
    binary_output = check_json_parameters(params)
    inputs = _tensors(obj["inputs"], binary, "input")
    if not inputs:
        raise CodecError("request has no inputs")
    return InferRequest(
        id=optional_str(obj, "id"),
        inputs=inputs,
        outputs=_requested_outputs(obj.get("outputs")),
        binary_output=binary_output,
        parameters=params,
    )


def decode_response(body: bytes, header_length: int | None) -> InferResponse:
    """Decode an infer response body. An ``{"error": ...}`` body raises CodecError(502)."""
    obj, binary = split_body(body, header_length)
    if "outputs" not in obj:
        if isinstance(obj.get("error"), str):
            raise CodecError(f"upstream error: {obj['error']}", status=502)
        raise CodecError("response needs 'outputs'", status=502)
    try:
        outputs = _tensors(obj["outputs"], binary, "output")
        name = obj.get("model_name")
        return InferResponse(
            model_name=name if isinstance(name, str) else "",
            model_version=optional_str(obj, "model_version"),
            id=optional_str(obj, "id"),
            outputs=outputs,
            parameters=obj.get("parameters") or {},
        )
    except CodecError as exc:
        raise CodecError(f"malformed response: {exc.message}", status=502) from None


# ---------------------------------------------------------------- encoding


def encode_request(
    inputs: dict[str, np.ndarray],
    *,
    outputs: list[str] | None = None,
    binary_output: bool = True,
    request_id: str | None = None,
    parameters: dict | None = None,
) -> tuple[bytes, int]:
    """An infer request with every input as binary data, and ``parameters`` (e.g. ``timeout``)
    besides ``binary_data_output``; returns (body, JSON header length)."""
    chunks: list[np.ndarray] = []
    header: dict = {"inputs": [binary_entry(n, np.asarray(a), chunks) for n, a in inputs.items()]}
    if request_id is not None:
        header["id"] = request_id
    header["parameters"] = {"binary_data_output": binary_output} if outputs is None else {}
    header["parameters"].update(parameters or {})
    if outputs is not None:
        header["outputs"] = [
            {"name": n, "parameters": {"binary_data": binary_output}} for n in outputs
        ]
    return join(header, chunks)


def encode_response(
    *,
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    requested: list[RequestedOutput] | None,
    binary_output: bool,
    batched: bool = False,
) -> tuple[bytes, int | None]:
    """An infer response; returns (body, header length, or None when every tensor is JSON).
    ``batched``: the outputs lead with the batch dimension (for classification)."""
    if requested is None:
        requested = [RequestedOutput(name, None) for name in outputs]
    chunks: list[np.ndarray] = []
    entries = []
    for r in requested:
        array = outputs.get(r.name)
        if array is None:
            raise CodecError(f"no output named {r.name!r}")
        array = np.asarray(array)
        binary = binary_output if r.binary is None else r.binary
        if r.classes:
            entries.append(classes_entry(r.name, array, r.classes, binary, chunks, batched))
        elif binary:
            entries.append(binary_entry(r.name, array, chunks))
        else:
            entries.append(json_entry(r.name, array, le_contiguous(array)))
    header: dict = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if request_id is not None:
        header["id"] = request_id
    header["outputs"] = entries
    body, length = join(header, chunks)
    return body, (length if chunks else None)


encode_error = error_body  # the protocol's error body: ``{"error": "..."}``


def encode_answer(
    cfg, req: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response to ``req`` from the model ``cfg`` describes (its name and version), with
    the outputs and encoding the request asked for: one place for the model server and the
    gateway."""
    return encode_response(
        model_name=cfg.name,
        model_version=cfg.version,
        request_id=req.id,
        outputs=outputs,
        requested=req.outputs,
        binary_output=req.binary_output,
        batched=req.outputs is not None
        and any(r.classes for r in req.outputs)
        and batched_outputs(cfg),
    )
