"""BF16 in the codecs: the REST codec (binary, JSON, the decode cache), gRPC's tensors, the
numpy <-> torch crossing and the burst path's tensor hand-over keep every bit (NaN payloads,
-0.0, subnormals); malformed BF16 (odd byte counts, values past its range, text, booleans) is a
clear 400 naming the input. Before, every BF16 tensor was refused."""

from __future__ import annotations

import json
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import orjson
import pytest
import torch

from burst.exchange import download_outputs, upload_inputs
from burst.store.memory import MemoryStore
from burst.tensors import receive
from gateway.grpc import inference_pb2 as pb
from gateway.grpc.tensors import decode_infer_request, encode_infer_response
from vmpool.codec import (
    CodecError,
    DecodeCache,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from vmpool.codec_torch import to_numpy, to_torch

BF16 = ml_dtypes.bfloat16
SPECIAL = np.array(
    [0x3FC0, 0x7FC1, 0xFFA5, 0x7F81, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x7F7F], np.uint16
)


def special(shape=(2, 5)) -> np.ndarray:
    return SPECIAL.reshape(shape).view(BF16)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == BF16 and np.array_equal(a.view(np.uint16), b.view(np.uint16))


def test_binary_request_and_response_keep_every_bit_also_from_the_decode_cache():
    x = special()
    body, length = encode_request({"x": x})
    assert b'"datatype":"BF16"' in body[:length]
    assert same_bits(decode_request(body, length).inputs["x"], x)
    cache = DecodeCache()
    for _ in range(2):  # the second decode comes from the cache
        assert same_bits(cache.decode(body, length).inputs["x"], x)
    answer, length = encode_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs={"y": x},
        requested=None,
        binary_output=True,
    )
    assert same_bits(decode_response(answer, length).outputs["y"], x)


def test_json_output_writes_values_and_tokens_for_non_finite():
    answer, length = encode_response(
        model_name="m",
        model_version="1",
        request_id=None,
        outputs={"y": special()},
        requested=None,
        binary_output=False,
    )
    assert length is None
    entry = json.loads(answer)["outputs"][0]  # (Python's json reads the NaN/Infinity tokens)
    assert entry["datatype"] == "BF16" and entry["shape"] == [2, 5]
    got = np.array(entry["data"], dtype=BF16)  # as tritonclient reads a JSON output
    want = special().reshape(-1)
    with np.errstate(invalid="ignore"):  # (numpy warns casting a bfloat16 NaN)
        assert np.array_equal(got.astype(np.float64), want.astype(np.float64), equal_nan=True)
    assert np.signbit(got[4]) and got[7] == want[7]  # -0.0 and the smallest subnormal


def json_request(data, shape=(3,)) -> bytes:
    entry = {"name": "x", "datatype": "BF16", "shape": list(shape), "data": data}
    return orjson.dumps({"inputs": [entry]})


def test_json_input_rounds_to_nearest_bf16_and_reads_null_as_nan():
    got = decode_request(json_request([1.0, 0.1, None]), None).inputs["x"]
    assert got.dtype == BF16
    assert got.view(np.uint16).tolist()[:2] == [0x3F80, 0x3DCD]  # 0.1 to nearest: 0x3DCD
    assert np.isnan(got[2])
    nested = decode_request(json_request([[1.5, 2.5]], shape=(1, 2)), None).inputs["x"]
    assert nested.tolist() == [[1.5, 2.5]]


@pytest.mark.parametrize(
    "data, message",
    [
        ([1.0, 3.4e38, 0.0], "out of range for BF16"),  # past BF16's max (3.39e38): inf
        ([1.0, 1e39, 0.0], "out of range for BF16"),
        ([1.0, True, 0.0], "BF16 tensor given bool values"),
        ([1.0, "2", 0.0], "BF16 tensor given text values"),
        ([1.0, 2.0], "needs 3"),
        ([1.0, [2.0], 3.0], "not a list of numbers"),
    ],
)
def test_malformed_json_bf16_is_a_clear_400(data, message):
    with pytest.raises(CodecError) as err:
        decode_request(json_request(data), None)
    assert err.value.status == 400 and message in err.value.message
    assert "input 'x'" in err.value.message


@pytest.mark.parametrize("size", [3, 5, 0, 7])
def test_binary_bf16_with_an_odd_or_wrong_byte_count_is_a_400(size):
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "BF16",
                "shape": [2],
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    head = orjson.dumps(header)
    with pytest.raises(CodecError) as err:
        decode_request(head + b"\x01" * size, len(head))
    assert err.value.status == 400
    assert f"binary_data_size is {size} bytes but shape [2] of BF16 needs 4" in err.value.message


def grpc_request(raw: bytes | None, shape=(2,), contents=None) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="BF16", shape=list(shape))
    if contents is not None:
        tensor.contents.fp32_contents.extend(contents)
    msg = pb.ModelInferRequest(model_name="m", inputs=[tensor])
    if raw is not None:
        msg.raw_input_contents.append(raw)
    return msg


def test_grpc_raw_bf16_keeps_every_bit_and_answers_raw():
    x = special()
    req = decode_infer_request(grpc_request(x.tobytes(), shape=x.shape))
    assert same_bits(req.inputs["x"], x)
    answer = encode_infer_response(
        model_name="m", model_version="1", request_id=None, outputs={"y": x}, requested=None
    )
    assert answer.outputs[0].datatype == "BF16"
    assert answer.raw_output_contents[0] == x.tobytes()


@pytest.mark.parametrize("raw", [b"\x00", b"\x00" * 3, b"\x00" * 5, b""])
def test_grpc_bf16_with_an_odd_or_wrong_byte_count_is_invalid(raw):
    with pytest.raises(CodecError) as err:
        decode_infer_request(grpc_request(raw))
    assert err.value.status == 400
    want = f"raw contents hold {len(raw)} bytes but shape [2] of BF16 needs 4"
    assert want in err.value.message


def test_grpc_bf16_in_typed_contents_is_refused_as_triton_does():
    with pytest.raises(CodecError) as err:
        decode_infer_request(grpc_request(None, contents=[1.0, 2.0]))
    assert "BF16 travels only in raw_input_contents" in err.value.message


def test_numpy_torch_crossing_keeps_bits_without_a_float_round_trip():
    x = special()
    t = to_torch(x)
    assert t.dtype == torch.bfloat16 and t.shape == (2, 5)
    assert t.view(torch.int16).numpy().view(np.uint16).tolist() == SPECIAL.reshape(2, 5).tolist()
    assert np.shares_memory(t.view(torch.uint16).numpy(), x)  # a view, not a copy
    assert same_bits(to_numpy(t), x)
    assert same_bits(to_numpy(t.t()), x.T)  # (a transposed view)
    assert same_bits(to_numpy(t[0, 1]), x[0, 1:2].reshape(()))  # a 0-d tensor


async def test_the_burst_hand_over_keeps_every_bit_inline_and_through_the_store():
    x = special((1, 10))
    cfg = SimpleNamespace(inputs=[SimpleNamespace(name="input")])
    for limit in (1 << 20, 1):  # inline, then through the store
        store = MemoryStore()
        refs = await upload_inputs(
            cfg, {"input": x}, store, "r", SimpleNamespace(inline_limit_bytes=limit)
        )
        assert refs[0]["dtype"] == "bfloat16"
        tensor = await receive(refs[0], store)
        assert same_bits(to_numpy(tensor), x)
        payload = {
            "report": {
                "plan_id": "p",
                "request_id": "r",
                "wall_ms": 1,
                "compute_ms": 1,
                "comm_ms": 0,
            },
            "outputs": refs,
        }
        out_cfg = SimpleNamespace(outputs=[SimpleNamespace(name="output")])
        outs, _ = await download_outputs(
            out_cfg, SimpleNamespace(payload=json.dumps(payload)), store, "r"
        )
        assert same_bits(outs["output"], x)
