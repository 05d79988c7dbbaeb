"""Hypothesis strategies for ModelInferRequest messages (tests/gateway/test_fuzz_grpc.py): a
valid request for a served model, built field by field, then hostile mutations of its fields."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from gateway.grpc import inference_pb2 as pb
from gateway.grpc.servicer import SERVICE
from gateway.grpc.tensors import CONTENTS_FIELD
from vmpool.wire import NUMPY_DTYPES

from .test_clients_datatypes import TYPES, sample

__all__ = ["SERVICE", "infer_cases", "metadata_strategy", "odd_names"]

MODELS = {  # model -> its inputs (name, datatype) and outputs, each row [4] or [784]
    "mlp": ([("input", "FP32")], ["output"]),
    "every": ([(n, d) for n, d, _ in TYPES], [f"output__{i}" for i in range(13)]),
}
DATATYPES = [d for _, d, _ in TYPES] + ["BYTES", "BF16", "", "fp32", "FP8", "INT128", "FP32 "]
DIMS = [0, 1, 2, 3, 4, 8, 784, -1, -(2**63), 2**31, 2**40, 2**62, 2**63 - 1]
ODD = ["", "mlp", "every", "MLP", "../mlp", "mlp/../every", "mlp\x00", " mlp", "mlp\n", "é"]
ODD += ["\U0001f642", "1", "-1", "%2e%2e", "m" * 300, "m" * 20_000, "mlp/1", "*", "every\t"]
FIELD_RANGE = {  # each typed contents field: the values its wire type holds
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}


def odd_names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ODD), st.text(max_size=24))


def metadata_strategy() -> st.SearchStrategy[tuple]:
    """gRPC metadata a careless or hostile client sends (keys the gateway reads, and others)."""
    keys = ["authorization", "x-api-key", "x-tidegate-route", "x-tidegate-workers"]
    keys += ["x-request-id", "x-other"]
    ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
    values = st.one_of(
        st.sampled_from(["vm", "burst", "VM ", "Bearer ", "Bearer x", "0", "-1", "9" * 30]),
        ascii_text,
    )
    return st.lists(
        st.tuples(st.sampled_from(keys), values), max_size=3, unique_by=lambda kv: kv[0]
    ).map(tuple)


PARAMETER_VALUES = {
    "bool": st.booleans(),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "string": st.text(max_size=16),
    "double": st.floats(),
    "uint64": st.integers(0, 2**64 - 1),
}
# A request's other parameters are the model's: Triton takes these kinds, not uint64.
MODEL_VALUES = {k: v for k, v in PARAMETER_VALUES.items() if k != "uint64"}
# The request parameters Triton reads itself take these kinds (and values) only; any other kind
# is INVALID_ARGUMENT (server src/grpc/infer_handler.cc; tests/gateway/test_proto23_*).
RESERVED = {
    "sequence_id": {"int64": PARAMETER_VALUES["int64"], "string": PARAMETER_VALUES["string"]},
    "sequence_start": {"bool": st.booleans()},
    "sequence_end": {"bool": st.booleans()},
    "priority": {"int64": st.integers(0, 2**63 - 1), "uint64": PARAMETER_VALUES["uint64"]},
    # a short timeout may expire in the queue (503 UNAVAILABLE, tests/gateway/test_proto24_timeout)
    "timeout": {"int64": st.one_of(st.just(0), st.integers(60_000_000, 2**63 - 1))},
}


def _parameter(draw, param: pb.InferParameter, values: dict = PARAMETER_VALUES) -> None:
    kind = draw(st.sampled_from(sorted(values)))
    setattr(param, f"{kind}_param", draw(values[kind]))


def _parameters(draw, params, *, request: bool = False) -> None:
    """Up to two parameters of any kind; a request's reserved ones of a kind Triton takes."""
    names = st.one_of(
        st.sampled_from(["binary_data_output", "sequence_id", "priority", "timeout", "x"]),
        st.text(max_size=12).filter(lambda n: n not in RESERVED and not n.startswith("triton_")),
    )
    for name in draw(st.lists(names, max_size=2, unique=True)):
        _parameter(
            draw, params[name], RESERVED.get(name, MODEL_VALUES) if request else PARAMETER_VALUES
        )


@st.composite
def valid_request(draw) -> pb.ModelInferRequest:
    model = draw(st.sampled_from(sorted(MODELS)))
    inputs, outputs = MODELS[model]
    rows, seed = draw(st.integers(1, 4)), draw(st.integers(0, 2**16))
    if model == "mlp":
        arrays = [np.random.default_rng(seed).standard_normal((rows, 784)).astype(np.float32)]
    else:
        arrays = sample(rows, seed)
    typed = model == "mlp" and draw(st.booleans())  # (FP16 travels only as raw bytes)
    msg = pb.ModelInferRequest(model_name=model, id=draw(st.one_of(st.just(""), st.text())))
    msg.model_version = draw(st.sampled_from(["", "1"]))
    _parameters(draw, msg.parameters, request=True)
    for (name, datatype), array in zip(inputs, arrays, strict=True):
        tensor = msg.inputs.add(name=name, datatype=datatype, shape=array.shape)
        _parameters(draw, tensor.parameters)
        if typed:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
        else:
            msg.raw_input_contents.append(array.tobytes())
    for name in draw(st.lists(st.sampled_from(outputs), max_size=3, unique=True)):
        out = msg.outputs.add(name=name)
        if draw(st.booleans()):
            out.parameters["classification"].int64_param = draw(st.integers(1, 12))
        if draw(st.booleans()):  # (HTTP's binary_data: every gRPC output is raw already)
            out.parameters["binary_data"].bool_param = draw(st.booleans())
    return msg


# -- mutations: each changes one field of the message (most make it one to refuse) ----------


def _pick(draw, msg) -> int:
    return draw(st.integers(0, len(msg.inputs) - 1))


def m_datatype(draw, msg) -> None:
    if msg.inputs:
        msg.inputs[_pick(draw, msg)].datatype = draw(
            st.one_of(st.sampled_from(DATATYPES), st.text(max_size=6))
        )


def m_shape(draw, msg) -> None:
    if msg.inputs:
        tensor = msg.inputs[_pick(draw, msg)]
        del tensor.shape[:]
        tensor.shape.extend(
            draw(st.lists(st.one_of(st.sampled_from(DIMS), st.integers(-3, 9)), max_size=4))
        )


def m_raw_length(draw, msg) -> None:
    if msg.raw_input_contents:
        i = draw(st.integers(0, len(msg.raw_input_contents) - 1))
        data = msg.raw_input_contents[i]
        cut = draw(st.integers(-9, 9))
        msg.raw_input_contents[i] = data[:cut] if cut < 0 else data + bytes(range(cut))


def m_raw_count(draw, msg) -> None:
    if msg.raw_input_contents and draw(st.booleans()):
        del msg.raw_input_contents[-1]
    else:
        msg.raw_input_contents.append(draw(st.binary(max_size=16)))


def m_typed(draw, msg) -> None:
    """One input's data as typed contents: the right field or another, counts that may disagree,
    values anywhere in the field's wire range (an INT8 given 1000)."""
    if not msg.inputs:
        return
    tensor = msg.inputs[_pick(draw, msg)]
    field = draw(
        st.one_of(
            st.sampled_from(sorted(FIELD_RANGE)), st.just(CONTENTS_FIELD.get(tensor.datatype))
        )
    )
    if field is None:
        return
    count = math.prod(tensor.shape) if all(0 <= d < 64 for d in tensor.shape) else 1
    size = draw(st.sampled_from([count, count, max(count - 1, 0), count + 1]))
    values = draw(st.lists(FIELD_RANGE[field], min_size=size, max_size=size))
    tensor.contents.Clear()
    getattr(tensor.contents, field).extend(values)
    if draw(st.booleans()):
        del msg.raw_input_contents[:]  # typed only (else: both, which is refused)


def m_all_typed(draw, msg) -> None:
    """Every input's data as typed contents in the field its datatype names (FP16: fp32's),
    one value maybe the extreme of the field's wire range (an INT8 given 2**31 - 1)."""
    raw = list(msg.raw_input_contents)
    del msg.raw_input_contents[:]
    for i, tensor in enumerate(msg.inputs):
        field = CONTENTS_FIELD.get(tensor.datatype, "fp32_contents")
        dtype = NUMPY_DTYPES.get(tensor.datatype, np.dtype(np.float32))
        values = (
            np.frombuffer(raw[i], dtype).tolist()
            if i < len(raw) and not len(raw[i]) % dtype.itemsize
            else []
        )
        if values and draw(st.booleans()):
            values[draw(st.integers(0, len(values) - 1))] = draw(FIELD_RANGE[field])
        tensor.contents.Clear()
        getattr(tensor.contents, field).extend(values)


def m_inputs(draw, msg) -> None:
    how = draw(st.sampled_from(["drop", "twice", "rename", "add", "none"]))
    if how == "none" or not msg.inputs:
        del msg.inputs[:]
        return
    i = _pick(draw, msg)
    if how == "drop":
        del msg.inputs[i]
        if len(msg.raw_input_contents) > i and draw(st.booleans()):
            del msg.raw_input_contents[i]
    elif how == "twice":
        msg.inputs.add().CopyFrom(msg.inputs[i])
        if msg.raw_input_contents:
            msg.raw_input_contents.append(msg.raw_input_contents[i])
    elif how == "rename":
        msg.inputs[i].name = draw(odd_names())
    else:
        msg.inputs.add(name=draw(odd_names()), datatype="FP32", shape=[1, 4])
        if msg.raw_input_contents:
            msg.raw_input_contents.append(bytes(16))


def m_outputs(draw, msg) -> None:
    how = draw(st.sampled_from(["unknown", "twice", "classification"]))
    if how == "unknown" or not msg.outputs:
        msg.outputs.add(name=draw(odd_names()))
    elif how == "twice":
        msg.outputs.add().CopyFrom(msg.outputs[0])
    else:
        out = msg.outputs[draw(st.integers(0, len(msg.outputs) - 1))]
        _parameter(draw, out.parameters["classification"])


def m_shared_memory(draw, msg) -> None:
    """tritonclient's set_shared_memory on an input or a requested output."""
    tensors = [*msg.inputs, *msg.outputs]
    if tensors:
        params = tensors[draw(st.integers(0, len(tensors) - 1))].parameters
        params["shared_memory_region"].string_param = draw(st.text(max_size=8))
        params["shared_memory_byte_size"].int64_param = draw(st.integers(0, 2**20))


def m_reserved_parameter(draw, msg) -> None:
    """A parameter Triton reads itself, or a model's, of any kind and value (a negative
    priority, a string timeout, a uint64): INVALID_ARGUMENT unless Triton would take it."""
    _parameter(draw, msg.parameters[draw(st.sampled_from([*sorted(RESERVED), "x"]))])


def m_model(draw, msg) -> None:
    if draw(st.booleans()):
        msg.model_name = draw(odd_names())
    else:
        msg.model_version = draw(odd_names())


MUTATIONS = [
    m_all_typed,
    m_datatype,
    m_shape,
    m_raw_length,
    m_raw_count,
    m_typed,
    m_inputs,
    m_outputs,
    m_shared_memory,
    m_model,
    m_reserved_parameter,
]


@st.composite
def infer_cases(draw) -> tuple[pb.ModelInferRequest, bool]:
    """(message, valid): a valid request, or one with up to three mutations (maybe refused)."""
    msg = draw(valid_request())
    mutations = draw(st.lists(st.sampled_from(MUTATIONS), max_size=3))
    for mutate in mutations:
        mutate(draw, msg)
    return msg, not mutations
