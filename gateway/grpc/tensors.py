"""Protobuf <-> core translation for ModelInfer: tensors in, tensors out. No gRPC types here.

Inputs come as ``raw_input_contents`` (little-endian bytes, one entry per input, what
tritonclient sends) or as typed ``contents``; outputs always go back as
``raw_output_contents``, as Triton answers (one copy of each output's bytes, no per-element
protobuf encoding).
"""

from __future__ import annotations

import asyncio
import math

import numpy as np

from vmpool.classify import bytes_payload, classes_of, classify
from vmpool.codec import CodecError, InferRequest, RequestedOutput, datatype_of, numpy_dtype
from vmpool.wire import refuse_impossible_shape, refuse_shared_memory

from . import inference_pb2 as pb

# Which typed ``contents`` field carries each datatype (the spec's table). FP16/BF16: raw only.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


# Decoded on a thread past these (gateway/protocol.py's OFF_LOOP_JSON_BYTES, for the same
# reason): a million one-element inputs held the event loop 17 s; raw tensor bytes are views,
# cheap at any size, so only entries and typed contents count.
OFF_LOOP_ENTRIES = 256
OFF_LOOP_TYPED_BYTES = 1 << 20


async def decode_off_loop(msg: pb.ModelInferRequest) -> InferRequest:
    """``decode_infer_request``, on a thread when the message has many entries or typed bytes."""
    entries = len(msg.inputs) + len(msg.outputs)
    if (
        entries > OFF_LOOP_ENTRIES
        or msg.ByteSize() - sum(len(raw) for raw in msg.raw_input_contents) > OFF_LOOP_TYPED_BYTES
    ):
        return await asyncio.to_thread(decode_infer_request, msg)
    return decode_infer_request(msg)


def decode_infer_request(msg: pb.ModelInferRequest) -> InferRequest:
    """A ModelInferRequest as the dispatcher's InferRequest; CodecError(400) if malformed."""
    if not msg.inputs:
        raise CodecError("request has no inputs")
    check_parameters(msg.parameters)
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise CodecError(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} "
            f"inputs; give every input's data there, or none"
        )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(msg.inputs):
        where = f"input {tensor.name!r}"
        if not tensor.name:
            raise CodecError(f"input {i} has no name")
        if tensor.name in inputs:
            raise CodecError(f"{where} is given twice")
        refuse_shared_memory(tensor.parameters, where)
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            raise CodecError(f"{where}: shape {list(shape)} has a negative dimension")
        refuse_impossible_shape(shape, where)
        dtype = numpy_dtype(tensor.datatype, where)
        count = math.prod(shape)
        if raw:
            if tensor.HasField("contents"):
                raise CodecError(
                    f"{where} has both contents and raw_input_contents; give its data in one"
                )
            inputs[tensor.name] = _from_raw(raw[i], tensor.datatype, dtype, shape, count, where)
        else:
            inputs[tensor.name] = _from_contents(tensor, dtype, shape, count, where)
    outputs = [_requested(o) for o in msg.outputs] if msg.outputs else None
    seen: set[str] = set()
    for output in outputs or ():  # (one pass: a set per prefix took 6.6 s for 10k outputs)
        if output.name in seen:
            raise CodecError(f"requested output {output.name!r} appears twice")  # (as over HTTP)
        seen.add(output.name)
    # Triton's queue timeout (us), acted on as over HTTP; the other parameters are not read
    timeout = msg.parameters["timeout"].int64_param if "timeout" in msg.parameters else 0
    params = {"timeout": timeout} if timeout else {}
    return InferRequest(msg.id or None, inputs, outputs, binary_output=True, parameters=params)


# The request parameters Triton reads itself and the one type (oneof field) each must have, as
# its gRPC front end checks them (server src/grpc/infer_handler.cc; vmpool/codec_params.py
# for HTTP). Triton takes a negative int64 timeout as a huge unsigned one; we refuse it, as
# HTTP's refuses a negative timeout.
_RESERVED_KINDS = {
    "sequence_id": ("int64_param", "string_param"),
    "sequence_start": ("bool_param",),
    "sequence_end": ("bool_param",),
    "priority": ("int64_param", "uint64_param"),
    "timeout": ("int64_param",),
    "triton_enable_empty_final_response": ("bool_param",),  # (tritonclient's streams send it)
}


_MODEL_KINDS = ("int64_param", "bool_param", "string_param", "double_param")


def check_parameters(params) -> None:
    """Refuse (CodecError 400: INVALID_ARGUMENT) a reserved request parameter of the wrong type,
    or a negative priority or timeout, or another key starting with ``triton_`` (reserved, as
    in Triton); other parameters are the model's: an int64, bool, string or double, as Triton
    takes them (a uint64 or an empty one is refused there too)."""
    for name in params:
        if name in _RESERVED_KINDS:
            continue
        if name.startswith("triton_"):
            raise CodecError(
                f"parameter keys starting with 'triton_' are reserved for Triton; "
                f"{name[:40]!r} is not one of them"
            )
        kind = params[name].WhichOneof("parameter_choice")
        if kind not in _MODEL_KINDS:
            raise CodecError(
                f"invalid value type for {name[:40]!r} parameter, expected int64_param, "
                f"bool_param, string_param or double_param, got {kind or 'no value'}"
            )
    for name, kinds in _RESERVED_KINDS.items():
        if name not in params:
            continue
        kind = params[name].WhichOneof("parameter_choice")
        if kind not in kinds:
            raise CodecError(
                f"invalid value type for '{name}' parameter, expected {' or '.join(kinds)}"
                f", got {kind or 'no value'}"
            )
        if name in ("priority", "timeout") and getattr(params[name], kind) < 0:
            raise CodecError(f"invalid value for '{name}', expected value >= 0")


def _requested(output) -> RequestedOutput:
    """A requested output; its ``classification`` parameter (int64) asks for the top k."""
    refuse_shared_memory(output.parameters, f"requested output {output.name!r}", output=True)
    params = {}
    if "classification" in output.parameters:
        param = output.parameters["classification"]
        kind = param.WhichOneof("parameter_choice")
        params["classification"] = getattr(param, kind) if kind else None
    return RequestedOutput(output.name, True, classes_of(output.name, params))


def _from_raw(
    data: bytes, datatype: str, dtype: np.dtype, shape: tuple, count: int, where: str
) -> np.ndarray:
    want = count * dtype.itemsize
    if len(data) != want:
        raise CodecError(
            f"{where}: raw contents hold {len(data)} bytes but shape "
            f"{list(shape)} of {datatype} needs {want}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _from_contents(tensor, dtype: np.dtype, shape: tuple, count: int, where: str) -> np.ndarray:
    name = CONTENTS_FIELD.get(tensor.datatype)
    if name is None:
        raise CodecError(f"{where}: datatype {tensor.datatype} travels only in raw_input_contents")
    values = getattr(tensor.contents, name)
    if len(values) != count:
        raise CodecError(
            f"{where}: {name} holds {len(values)} values but shape {list(shape)} needs {count}"
        )
    for other, _ in tensor.contents.ListFields():
        if other.name != name:
            raise CodecError(
                f"{where}: datatype {tensor.datatype} goes in {name}, not {other.name}"
            )
    if dtype.kind in "iu" and dtype.itemsize < 4 and values:  # int_contents for an INT8 ...
        info, wide = np.iinfo(dtype), np.asarray(values, dtype=np.int64)
        if wide.min() < info.min or wide.max() > info.max:
            raise CodecError(f"{where}: {name} holds a value out of range for {tensor.datatype}")
    return np.asarray(values, dtype=dtype).reshape(shape)


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    requested: list[RequestedOutput] | None,
    batched: bool = False,
) -> pb.ModelInferResponse:
    """The dispatcher's outputs as a ModelInferResponse with raw output contents (``batched``:
    the outputs lead with the batch dimension, for classification)."""
    if requested is None:
        requested = [RequestedOutput(name, True) for name in outputs]
    entries, raw = [], []
    for r in requested:
        name = r.name
        array = outputs.get(name)
        if array is None:
            raise CodecError(f"no output named {name!r}")
        array = np.asarray(array)
        if r.classes:  # the classification extension: BYTES "score:index", top k
            labels = classify(name, array, r.classes, batched)
            entries.append(
                pb.ModelInferResponse.InferOutputTensor(
                    name=name, datatype="BYTES", shape=list(labels.shape)
                )
            )
            raw.append(bytes_payload(labels))
            continue
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        entries.append(
            pb.ModelInferResponse.InferOutputTensor(
                name=name, datatype=datatype_of(array), shape=list(array.shape)
            )
        )
        raw.append(np.ascontiguousarray(array).tobytes())
    return pb.ModelInferResponse(
        model_name=model_name,
        model_version=model_version or "",
        id=request_id or "",
        outputs=entries,
        raw_output_contents=raw,
    )
