"""The Open Inference Protocol's wire constants and shapes, in one place.

Gateway (REST and gRPC), model server and replica client all take from here: the binary header's
name and parsing, the datatype tables, the error body, the 413 text, and the JSON documents the
protocol answers with (server and model metadata, health, model config). Tensor bodies are
encoded and decoded in ``vmpool.codec``; request bodies are read in ``vmpool.body``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
import orjson

if TYPE_CHECKING:
    from vmpool.artifact import ModelConfig

HEADER_LENGTH = "Inference-Header-Content-Length"
HEADER_LENGTH_KEY = HEADER_LENGTH.lower()  # as ASGI and aiohttp's multidict give it
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "statistics"]
SHARED_MEMORY = "shared_memory_region"  # Triton's shared-memory extension: not served
# On a model server's 503 for a request dropped past its ``timeout`` (Triton's "Request timeout
# expired"): the request's own budget ran out, the replica is fine (no resend, no breaker count).
QUEUE_TIMEOUT_HEADER = "x-tidegate-queue-timeout"

# Open Inference Protocol datatype <-> torch dtype name (numpy spells them the same, except BF16).
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
}
# BF16 has no numpy dtype of its own: ml_dtypes' bfloat16 is what tritonclient (r26.06 on)
# builds and reads BF16 tensors as (2 bytes, the top half of an FP32). numpy calls its kind "V"
# (void), so it is found by identity below, never by kind. BYTES has no fixed width.
BF16 = np.dtype(ml_dtypes.bfloat16)
# OIP datatype -> little-endian numpy dtype.
NUMPY_DTYPES: dict[str, np.dtype] = {
    dt: BF16 if dt == "BF16" else np.dtype(name).newbyteorder("<") for dt, name in DATATYPES.items()
}
_BY_NUMPY_KIND: dict[tuple[str, int], str] = {
    (np.dtype(name).kind, np.dtype(name).itemsize): dt
    for dt, name in DATATYPES.items()
    if dt != "BF16"
}
_BY_TORCH_NAME: dict[str, str] = {name: dt for dt, name in DATATYPES.items()}
# Triton's model-config spelling of each datatype (GET /v2/models/{m}/config).
TRITON_TYPES: dict[str, str] = {
    dt: "TYPE_" + ("STRING" if dt == "BYTES" else dt) for dt in DATATYPES
}
KIND_WORDS = {
    "f": "floating-point",
    "i": "integer",
    "u": "integer",
    "b": "boolean",
    "U": "text",
    "S": "text",
    "O": "mixed or non-numeric",
    "c": "complex",
}


class CodecError(Exception):
    """A request or response that does not follow the protocol; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}


def datatype_of(value) -> str:
    """The OIP datatype of a numpy array or dtype, or of a torch dtype (CodecError if none)."""
    if isinstance(value, np.ndarray):
        value = value.dtype
    if isinstance(value, np.dtype):
        if value == BF16:
            return "BF16"
        found = _BY_NUMPY_KIND.get((value.kind, value.itemsize))
        if found is None:
            raise CodecError(f"numpy dtype {value} has no Open Inference Protocol datatype")
        return found
    torch_name = str(value).removeprefix("torch.")
    found = _BY_TORCH_NAME.get(torch_name)
    if found is None:
        raise CodecError(
            f"tensor dtype {torch_name} has no Open Inference Protocol datatype "
            f"(supported: {', '.join(DATATYPES.values())})"
        )
    return found


def numpy_dtype(datatype: str, where: str) -> np.dtype:
    """The little-endian numpy dtype of an OIP datatype; CodecError naming ``where`` if none."""
    dtype = NUMPY_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is not None:
        return dtype
    if datatype == "BYTES":
        raise CodecError(f"{where}: datatype BYTES is not supported by this server")
    raise CodecError(
        f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(sorted(NUMPY_DTYPES))}"
    )


def parse_header_length(value: str | bytes | None) -> int | None:
    """The ``Inference-Header-Content-Length`` value as an int (CodecError(400) if invalid)."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        shown = value.decode("latin-1") if isinstance(value, bytes) else value
        raise CodecError(f"{HEADER_LENGTH} must be an integer, got {shown!r}") from None
    if length < 0:
        raise CodecError(f"{HEADER_LENGTH} must not be negative, got {length}")
    return length


# ---------------------------------------------------------------- JSON documents


def error_body(message: str) -> bytes:
    """The protocol's error body: ``{"error": "..."}``."""
    return orjson.dumps({"error": str(message)})


def too_large_message(limit_bytes: int, size_bytes: int | None = None) -> str:
    """The 413 text, the same from the gateway and the model server."""
    limit_mb = limit_bytes / (1024 * 1024)
    if size_bytes is None:
        return f"request body is over the limit of {limit_bytes} bytes ({limit_mb:g} MiB)"
    return (
        f"request body of {size_bytes} bytes is over the limit of {limit_bytes} bytes "
        f"({limit_mb:g} MiB)"
    )


LIVE_BODY = orjson.dumps({"live": True})
READY_BODY = orjson.dumps({"ready": True})
NOT_READY_BODY = orjson.dumps({"ready": False})


def model_ready_body(name: str, ready: bool) -> bytes:
    return orjson.dumps({"name": name, "ready": ready})


def server_metadata(name: str, version: str) -> dict:
    return {"name": name, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(cfg: ModelConfig) -> dict:
    """``GET /v2/models/{m}``: name, versions, platform, inputs, outputs, batching parameters."""
    return {
        "name": cfg.name,
        "versions": [cfg.version],
        "platform": cfg.platform,
        "inputs": [t.to_dict() for t in cfg.inputs],
        "outputs": [t.to_dict() for t in cfg.outputs],
        "parameters": {
            "max_batch_size": cfg.max_batch_size,
            "max_queue_delay_ms": cfg.max_queue_delay_ms,
            "slo_ms": cfg.slo_ms,
        },
    }


def model_config(cfg: ModelConfig) -> dict:
    """``GET /v2/models/{m}/config`` in Triton's model-config shape (what tritonclient reads).

    As in Triton, with ``max_batch_size > 0`` the dims leave out the batch dimension."""

    def tensors(specs) -> list[dict]:
        out = []
        for t in specs:
            batched = bool(t.shape) and t.shape[0] == -1
            dims = list(t.shape[1:] if batched else t.shape)
            out.append({"name": t.name, "data_type": TRITON_TYPES[t.datatype], "dims": dims})
        return out

    batched = all(t.shape and t.shape[0] == -1 for t in cfg.inputs)
    config = {
        "name": cfg.name,
        "platform": cfg.platform,
        "backend": "pytorch",
        "version_policy": {"specific": {"versions": [cfg.version]}},
        "max_batch_size": cfg.max_batch_size if batched else 0,
        "input": tensors(cfg.inputs),
        "output": tensors(cfg.outputs),
        "parameters": {"slo_ms": {"string_value": f"{cfg.slo_ms:g}"}},
    }
    if batched:  # (as Triton, and the gRPC ModelConfig: no dynamic batching without a batch)
        delay_us = int(cfg.max_queue_delay_ms * 1000)
        config["dynamic_batching"] = {"max_queue_delay_microseconds": delay_us}
    return config


def repository_entry(name: str, version: str | None, state: str, reason: str = "") -> dict:
    """One row of ``POST /v2/repository/index`` (state: READY, UNAVAILABLE, LOADING...)."""
    row = {"name": name, "state": state, "reason": reason}
    if version is not None:
        row["version"] = version
    return row


MAX_DIMS = 64  # numpy's limit on an array's dimensions
MAX_ELEMENTS = 2**59  # numpy's bound on an array's bytes (2**63), at up to 16 bytes an element


def refuse_impossible_shape(shape: tuple[int, ...], where: str) -> None:
    """CodecError for a shape no array can take, which numpy's ValueError made a 500: more than
    MAX_DIMS dimensions, or a zero-sized tensor whose other dimensions overflow (a shape
    without a zero is refused by the count of its data: no body holds that many elements)."""
    if len(shape) > MAX_DIMS:
        raise CodecError(f"{where}: shape has {len(shape)} dimensions, at most {MAX_DIMS}")
    if 0 in shape and math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise CodecError(f"{where}: shape {list(shape)} has too many elements for a tensor")


def refuse_shared_memory(params, where: str, *, output: bool = False) -> None:
    """Triton's shared-memory extension (tritonclient's ``set_shared_memory``) is not served, on
    either protocol: an input or requested output that names a region is refused (an output
    answered in the body would leave the client reading a region nothing wrote)."""
    if SHARED_MEMORY in params:
        hint = "" if output else "; send its data in the request"
        raise CodecError(f"{where}: shared memory is not supported by this server{hint}")


def optional_str(obj: dict, key: str) -> str | None:
    """``obj[key]``: a string or absent (None); CodecError otherwise."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CodecError(f"'{key}' must be a string")
    return value
