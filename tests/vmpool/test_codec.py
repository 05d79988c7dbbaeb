"""The Open Inference Protocol codec: JSON and binary tensors, and every way a body can be wrong."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from vmpool.artifact import ModelConfig, TensorSpec
from vmpool.codec import (
    CodecError,
    InferRequest,
    RequestedOutput,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
    encode_response,
    validate_inputs,
)

SAMPLES = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-32768, 1, 32767]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 5, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 9, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 65504.0]], dtype=np.float16),
    "FP32": np.array([[0.1, -3.4e38, 1e-30]], dtype=np.float32),
    "FP64": np.array([[0.1, -1e300, 5e-324]], dtype=np.float64),
}


def _json_body(inputs: list[dict], **extra) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_round_trips_as_json_and_binary(datatype):
    x = SAMPLES[datatype]
    body, hl = encode_request({"t": x})
    req = decode_request(body, hl)
    assert req.inputs["t"].dtype == x.dtype and np.array_equal(req.inputs["t"], x)

    json_req = decode_request(
        _json_body([{"name": "t", "shape": [1, 3], "datatype": datatype, "data": x.tolist()}]), None
    )
    assert np.array_equal(json_req.inputs["t"], x) and json_req.inputs["t"].dtype == x.dtype

    for binary in (False, True):
        out, ohl = encode_response(
            model_name="m",
            model_version="1",
            request_id="r",
            outputs={"t": x},
            requested=None,
            binary_output=binary,
        )
        assert (ohl is not None) == binary
        resp = decode_response(out, ohl)
        assert resp.outputs["t"].dtype == x.dtype and np.array_equal(resp.outputs["t"], x)
        assert (resp.model_name, resp.model_version, resp.id) == ("m", "1", "r")


def test_json_data_may_be_flat_or_nested():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = decode_request(
        _json_body(
            [{"name": "x", "shape": [2, 3, 4], "datatype": "FP32", "data": x.ravel().tolist()}]
        ),
        None,
    )
    nested = decode_request(
        _json_body([{"name": "x", "shape": [2, 3, 4], "datatype": "FP32", "data": x.tolist()}]),
        None,
    )
    assert np.array_equal(flat.inputs["x"], x) and np.array_equal(nested.inputs["x"], x)
    assert flat.outputs is None and flat.binary_output is False


def test_binary_inputs_mix_with_json_inputs_and_keep_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[1, 2]], dtype=np.int64)
    header = orjson.dumps(
        {
            "id": "q",
            "inputs": [
                {
                    "name": "a",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": a.nbytes},
                },
                {"name": "j", "shape": [2], "datatype": "INT32", "data": [7, 8]},
                {
                    "name": "b",
                    "shape": [1, 2],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": b.nbytes},
                },
            ],
            "outputs": [{"name": "o1", "parameters": {"binary_data": True}}, {"name": "o2"}],
            "parameters": {"binary_data_output": False, "priority": 3},
        }
    )
    req = decode_request(header + a.tobytes() + b.tobytes(), len(header))
    assert np.array_equal(req.inputs["a"], a) and np.array_equal(req.inputs["b"], b)
    assert req.inputs["j"].tolist() == [7, 8] and req.id == "q"
    assert req.outputs == [RequestedOutput("o1", True), RequestedOutput("o2", None)]
    assert req.parameters["priority"] == 3


def test_response_mixes_binary_and_json_outputs_as_requested():
    outs = {"p": np.ones((2, 5), np.float32), "k": np.array([3, 4], np.int64)}
    body, hl = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=outs,
        requested=[RequestedOutput("k", None), RequestedOutput("p", True)],
        binary_output=False,
    )
    header = orjson.loads(body[:hl])
    by_name = {o["name"]: o for o in header["outputs"]}
    assert by_name["k"]["data"] == [3, 4] and "data" not in by_name["p"]
    assert by_name["p"]["parameters"]["binary_data_size"] == 40
    assert len(body) == hl + 40
    resp = decode_response(body, hl)
    assert list(resp.outputs) == ["k", "p"]
    assert np.array_equal(resp.outputs["p"], outs["p"])


def test_all_json_response_has_no_header_length_and_flat_data():
    body, hl = encode_response(
        model_name="m",
        model_version="2",
        request_id=None,
        outputs={"y": np.arange(6, dtype=np.float32).reshape(2, 3)},
        requested=None,
        binary_output=False,
    )
    assert hl is None
    out = orjson.loads(body)["outputs"][0]
    assert out == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    }


@pytest.mark.parametrize(
    "array", [np.array(3.5, np.float32), np.zeros((0, 3), np.int32), np.zeros((2, 0), np.float64)]
)
def test_scalars_and_empty_tensors_round_trip(array):
    body, hl = encode_request({"t": array})
    assert decode_request(body, hl).inputs["t"].shape == array.shape
    for binary in (False, True):
        body, hl = encode_response(
            model_name="m",
            model_version=None,
            request_id=None,
            outputs={"t": array},
            requested=None,
            binary_output=binary,
        )
        out = decode_response(body, hl).outputs["t"]
        assert out.shape == array.shape and out.dtype == array.dtype
        assert np.array_equal(out, array)


def test_encode_request_asks_for_named_outputs():
    body, hl = encode_request(
        {"x": np.zeros((1, 2), np.float32)}, outputs=["y"], binary_output=False, request_id="abc"
    )
    req = decode_request(body, hl)
    assert req.id == "abc" and req.outputs == [RequestedOutput("y", False)]
    body, hl = encode_request({"x": np.zeros((1, 2), np.float32)})
    assert decode_request(body, hl).binary_output is True


def test_non_contiguous_and_big_endian_arrays_encode_correctly():
    x = np.arange(12, dtype=np.float32).reshape(3, 4).T  # non-contiguous
    big = np.arange(4, dtype=">i4")
    body, hl = encode_request({"x": x, "big": big})
    req = decode_request(body, hl)
    assert np.array_equal(req.inputs["x"], x) and np.array_equal(req.inputs["big"], big)
    body, _ = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs={"x": x},
        requested=None,
        binary_output=False,
    )
    assert orjson.loads(body)["outputs"][0]["data"] == x.ravel().tolist()


X_OK = {"name": "x", "shape": [1, 2], "datatype": "FP32"}
BINARY_X = orjson.dumps({"inputs": [{**X_OK, "parameters": {"binary_data_size": 8}}]})
BAD_REQUESTS = [
    (b"", None, "malformed JSON"),
    (b"{not json", None, "malformed JSON"),
    (b"\xff\xfe\x00garbage", None, "malformed JSON"),
    (b"[1, 2]", None, "must be an object"),
    (b"{}", None, "needs 'inputs'"),
    (_json_body([]), None, "no inputs"),
    (orjson.dumps({"inputs": {"x": 1}}), None, "'inputs' must be a list"),
    (_json_body([5]), None, "must be an object"),
    (_json_body([{"shape": [1], "datatype": "FP32", "data": [1]}]), None, "'name'"),
    (_json_body([{"name": "x", "datatype": "FP32", "data": [1]}]), None, "needs 'shape'"),
    (_json_body([{"name": "x", "shape": [1], "data": [1]}]), None, "'datatype'"),
    (
        _json_body([{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]),
        None,
        "unknown datatype 'FP8'",
    ),
    (
        _json_body([{"name": "x", "shape": [1], "datatype": "BF16", "data": [True]}]),
        None,
        "BF16 tensor given bool values",
    ),
    (
        _json_body([{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]),
        None,
        "BYTES is not supported",
    ),
    (_json_body([{**X_OK, "shape": [1, -2], "data": [1, 2]}]), None, "negative dimension"),
    (_json_body([{**X_OK, "shape": "1x2", "data": [1, 2]}]), None, "'shape' must be a list"),
    (_json_body([{**X_OK, "shape": [1.5, 2], "data": [1, 2]}]), None, "non-negative integers"),
    (_json_body([{**X_OK, "shape": [True, 2], "data": [1, 2]}]), None, "non-negative integers"),
    (_json_body([{**X_OK, "data": [1, 2, 3]}]), None, "has 3 elements but shape [1, 2] needs 2"),
    (
        _json_body([{**X_OK, "shape": [2**62, 4], "data": [1]}]),
        None,
        "has 1 elements but shape [4611686018427387904, 4] needs 18446744073709551616",
    ),
    (
        b'{"inputs": [{"name": "x", "shape": [100000000000000000000000], "datatype": "FP32", '
        b'"data": [1]}]}',
        None,
        "non-negative integers",
    ),
    (_json_body([{**X_OK, "data": [[1, 2], [3]]}]), None, "does not follow shape [1, 2]"),
    (_json_body([{**X_OK, "data": [[1, 2, 3]]}]), None, "does not follow shape [1, 2] at depth 1"),
    (_json_body([{**X_OK, "data": [[[1], [2]]]}]), None, "not a list of numbers"),
    (_json_body([{**X_OK, "data": [1, [2]]}]), None, "not a list of numbers"),
    (_json_body([{**X_OK, "datatype": "INT8", "data": [1, [2]]}]), None, "not a list of numbers"),
    (_json_body([{**X_OK, "datatype": "INT8", "data": [[1], [2]]}]), None, "does not follow"),
    (_json_body([{**X_OK, "shape": [], "data": [[1]]}]), None, "scalar shape"),
    (_json_body([{**X_OK, "data": ["a", "b"]}]), None, "not a list of numbers"),
    (_json_body([{**X_OK, "data": [{}, 1]}]), None, "not a list of numbers"),
    (
        _json_body([{**X_OK, "datatype": "INT32", "data": [1.5, 2]}]),
        None,
        "input 'x' is INT32 but 'data' holds floating-point values",
    ),
    (_json_body([{**X_OK, "datatype": "UINT8", "data": [1, 256]}]), None, "out of range"),
    (
        b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", '
        b'"data": [1, 1000000000000000000000000]}]}',
        None,
        "input 'x' is INT64 but 'data' holds floating-point",
    ),
    (
        _json_body([{**X_OK, "datatype": "BOOL", "data": [1, 0]}]),
        None,
        "input 'x' is BOOL but 'data' holds integer values",
    ),
    (_json_body([X_OK]), None, "neither 'data' nor"),
    (_json_body([{**X_OK, "data": [1, 2]}, {**X_OK, "data": [1, 2]}]), None, "appears twice"),
    (
        _json_body([{**X_OK, "data": [1, 2], "parameters": {"binary_data_size": 8}}]),
        None,
        "both 'data' and binary_data_size",
    ),
    (_json_body([{**X_OK, "parameters": "x"}]), None, "'parameters' must be an object"),
    (
        _json_body([{**X_OK, "parameters": {"binary_data_size": -8}}]),
        None,
        "binary_data_size must be a non-negative integer",
    ),
    (BINARY_X + b"\0" * 8, None, "malformed JSON"),  # binary data but no header length
    (BINARY_X + b"\0" * 8, len(BINARY_X) + 9, "body has"),
    (BINARY_X + b"\0" * 8, -1, "body has"),
    (BINARY_X + b"\0" * 8, len(BINARY_X) - 3, "malformed JSON"),
    (BINARY_X + b"\0" * 4, len(BINARY_X), "runs past the end"),
    (BINARY_X + b"\0" * 12, len(BINARY_X), "4 bytes after the JSON header"),
    (BINARY_X, len(BINARY_X), "runs past the end"),
    (
        orjson.dumps({"inputs": [{**X_OK, "parameters": {"binary_data_size": 12}}]}) + b"\0" * 12,
        len(orjson.dumps({"inputs": [{**X_OK, "parameters": {"binary_data_size": 12}}]})),
        "binary_data_size is 12 bytes but shape [1, 2] of FP32 needs 8",
    ),
    (_json_body([{**X_OK, "data": [1, 2]}], outputs={"y": 1}), None, "'outputs' must be a list"),
    (_json_body([{**X_OK, "data": [1, 2]}], outputs=[{"nam": "y"}]), None, "string 'name'"),
    (
        _json_body(
            [{**X_OK, "data": [1, 2]}],
            outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}],
        ),
        None,
        "binary_data must be a boolean",
    ),
    (
        _json_body([{**X_OK, "data": [1, 2]}], parameters={"binary_data_output": 1}),
        None,
        "binary_data_output must be a boolean",
    ),
    (_json_body([{**X_OK, "data": [1, 2]}], parameters=[1]), None, "'parameters' must be"),
    (_json_body([{**X_OK, "data": [1, 2]}], id=7), None, "'id' must be a string"),
]


@pytest.mark.parametrize("body,header_length,message", BAD_REQUESTS)
def test_malformed_requests_get_a_precise_400(body, header_length, message):
    with pytest.raises(CodecError) as info:
        decode_request(body, header_length)
    assert info.value.status == 400
    assert message in str(info.value)


def test_random_bytes_never_raise_anything_but_codec_error():
    rng = np.random.default_rng(0)
    valid, hl = encode_request({"x": np.ones((2, 3), np.float32)}, outputs=["y"])
    for i in range(300):
        body = bytearray(valid)
        for pos in rng.integers(0, len(body), size=1 + i % 4):
            body[pos] = int(rng.integers(0, 256))
        cut = bytes(body[: int(rng.integers(0, len(body) + 1))]) if i % 3 == 0 else bytes(body)
        try:
            decode_request(cut, hl if i % 5 else None)
        except CodecError as exc:
            assert exc.status == 400


CFG = ModelConfig(
    name="m",
    inputs=(TensorSpec("a", "FP32", (-1, 3)), TensorSpec("b", "INT64", (-1,))),
    outputs=(TensorSpec("y", "FP32", (-1, 2)),),
    max_batch_size=4,
)


def _req(a=None, b=None, outputs=None, **extra):
    inputs = {
        "a": np.zeros((2, 3), np.float32) if a is None else a,
        "b": np.zeros(2, np.int64) if b is None else b,
        **extra,
    }
    return InferRequest(
        id=None,
        inputs={k: v for k, v in inputs.items() if v is not False},
        outputs=outputs,
        binary_output=False,
        parameters={},
    )


def test_validate_accepts_a_fitting_request():
    validate_inputs(_req(outputs=[RequestedOutput("y", True)]), CFG)


@pytest.mark.parametrize(
    "req,message",
    [
        (_req(c=np.zeros(2)), "has no input 'c'"),
        (_req(b=False), "missing input 'b'"),
        (_req(a=np.zeros((2, 3), np.float64)), "datatype FP64 but model m expects FP32"),
        (_req(a=np.zeros((2, 4), np.float32)), "shape [2, 4] does not match [-1, 3]"),
        (_req(a=np.zeros((2, 3, 1), np.float32)), "does not match"),
        (_req(a=np.zeros((5, 3), np.float32), b=np.zeros(5, np.int64)), "exceeds max_batch_size 4"),
        (_req(a=np.zeros((0, 3), np.float32), b=np.zeros(0, np.int64)), "at least 1"),
        (_req(b=np.zeros(3, np.int64)), "disagree on batch size"),
        (_req(outputs=[RequestedOutput("z", None)]), "has no output 'z'"),
    ],
)
def test_validate_rejects_requests_that_do_not_fit_the_model(req, message):
    with pytest.raises(CodecError) as info:
        validate_inputs(req, CFG)
    assert info.value.status == 400 and message in str(info.value)


def test_error_bodies():
    assert orjson.loads(encode_error("boom")) == {"error": "boom"}
    with pytest.raises(CodecError) as info:
        decode_response(encode_error("model failed"), None)
    assert info.value.status == 502 and "model failed" in str(info.value)
    with pytest.raises(CodecError) as info:
        decode_response(b'{"outputs": [{"name": "y"}]}', None)
    assert info.value.status == 502


def test_null_reads_as_nan_in_a_float_tensor_only():
    """KServe's SDK writes NaN as null (JSON has none); an integer tensor has no NaN to take."""
    from vmpool.codec_json import json_array

    for dtype in ("float16", "float32", "float64"):
        got = json_array([[1.5, None], [None, -2.0]], np.dtype(dtype), (2, 2), "x")
        assert got.dtype == np.dtype(dtype) and np.isnan(got).tolist() == [[0, 1], [1, 0]]
        assert got[0, 0] == 1.5 and got[1, 1] == -2.0
    for data, dtype in [([1, None], "int32"), ([None, True], "bool"), ([None, "a"], "float32")]:
        with pytest.raises(CodecError):
            json_array(data, np.dtype(dtype), (2,), "x")
