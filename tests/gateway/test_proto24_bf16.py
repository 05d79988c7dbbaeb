"""BF16 end to end through the real clients: tritonclient (r26.06 on) builds and reads BF16
tensors as ml_dtypes' bfloat16. One model takes BF16 (and gives back an FP32 and a BF16 output),
one takes FP32 and gives BF16; every answer equals the program run in-process bit for bit (NaN
payloads, -0.0, infinities, subnormals included), over HTTP (binary and JSON) and gRPC. Before,
the gateway refused BF16 with a 400."""

from __future__ import annotations

import httpx
import ml_dtypes
import numpy as np
import orjson
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from torch import nn

from ops.cli import main as cli
from vmpool.export import export_module

from .conftest import gateway_before_replica

BF16 = ml_dtypes.bfloat16
# 1.5, quiet NaNs with payloads (one negative), a signalling NaN, -0.0, +-inf, the smallest
# subnormal, the largest finite value, and a few ordinary ones
GIVES_OUT = "output"  # (and its input "x": `tidegate export` takes the program's names)
SPECIAL_BITS = [0x3FC0, 0x7FC1, 0xFFA5, 0x7F81, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x7F7F]


class TakesBF16(nn.Module):
    def forward(self, x):
        return x.float() * 2.0 - 1.0, x * 3


class GivesBF16(nn.Module):
    def forward(self, x):
        return (x * 1.5).to(torch.bfloat16)


def bf16_sample(rows: int, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal((rows, 9)).astype(np.float32)
    x = values.astype(BF16)
    x[0] = np.array(SPECIAL_BITS, np.uint16).view(BF16)
    return x


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype.itemsize == 2 else np.uint32)


def assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(bits(got), bits(want))


def torch_takes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        wide, same = TakesBF16()(torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16))
    return wide.numpy(), same.view(torch.uint16).numpy().view(BF16)


def torch_gives(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return GivesBF16()(torch.from_numpy(x)).view(torch.uint16).numpy().view(BF16)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("proto24-bf16")
    repo = root / "repo"
    example = torch.zeros(2, 9, dtype=torch.bfloat16)
    export_module(TakesBF16(), (example,), name="takes", repo=repo, output_names=["wide", "same"])
    # imported as a user brings a program (`tidegate export`), which refused bfloat16 before
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(GivesBF16(), (torch.zeros(2, 9),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(root / "gives.pt2"))
    assert cli(["export", str(root / "gives.pt2"), "--name", "gives", "--out", str(repo)]) == 0
    with gateway_before_replica(repo, root) as (url, target):
        yield url.removeprefix("http://"), target


def test_metadata_and_config_say_bf16(served):
    host, target = served
    meta = thttp.InferenceServerClient(host).get_model_metadata("takes")
    assert [i["datatype"] for i in meta["inputs"]] == ["BF16"]
    assert [o["datatype"] for o in meta["outputs"]] == ["FP32", "BF16"]
    config = thttp.InferenceServerClient(host).get_model_config("gives")
    assert [(o["name"], o["data_type"]) for o in config["output"]] == [(GIVES_OUT, "TYPE_BF16")]
    grpc_config = tgrpc.InferenceServerClient(target).get_model_config("takes", as_json=True)
    assert grpc_config["config"]["input"][0]["data_type"] == "TYPE_BF16"


@pytest.mark.parametrize("binary_output", [True, False])
def test_tritonclient_http_bf16_in_and_out(served, binary_output):
    host, _ = served
    x = bf16_sample(3, 1)
    inp = thttp.InferInput("input", list(x.shape), "BF16")
    inp.set_data_from_numpy(x)  # (tritonclient sends BF16 as binary only)
    outputs = [thttp.InferRequestedOutput(n, binary_data=binary_output) for n in ("wide", "same")]
    result = thttp.InferenceServerClient(host).infer("takes", [inp], outputs=outputs)
    wide, same = torch_takes(x)
    if binary_output:
        assert_bit_exact(result.as_numpy("wide"), wide)
        assert_bit_exact(result.as_numpy("same"), same)
    else:  # JSON carries values, not NaN payloads. FP32 writes null for any non-finite value
        # (tests/gateway/test_clients22_json_nonfinite.py); BF16 the tokens, infinities kept
        got = result.as_numpy("wide")
        assert got.dtype == wide.dtype
        np.testing.assert_array_equal(got, np.where(np.isfinite(wide), wide, np.nan))
        got = result.as_numpy("same")
        assert got.dtype == same.dtype
        np.testing.assert_array_equal(got.astype(np.float64), same.astype(np.float64))


def test_tritonclient_http_bf16_output_of_an_fp32_model(served):
    host, _ = served
    x = np.random.default_rng(2).standard_normal((4, 9)).astype(np.float32)
    x[0, :3] = [np.nan, np.inf, 3e38]  # 3e38 * 1.5 overflows BF16: inf
    inp = thttp.InferInput("x", list(x.shape), "FP32")  # (the imported program's names)
    inp.set_data_from_numpy(x, binary_data=False)
    result = thttp.InferenceServerClient(host).infer("gives", [inp])
    assert_bit_exact(result.as_numpy(GIVES_OUT), torch_gives(x))


def test_tritonclient_grpc_bf16_in_and_out(served):
    _, target = served
    client = tgrpc.InferenceServerClient(target)
    x = bf16_sample(2, 3)
    inp = tgrpc.InferInput("input", list(x.shape), "BF16")
    inp.set_data_from_numpy(x)
    result = client.infer("takes", [inp], client_timeout=60)
    wide, same = torch_takes(x)
    assert_bit_exact(result.as_numpy("wide"), wide)
    assert_bit_exact(result.as_numpy("same"), same)
    f = np.random.default_rng(4).standard_normal((3, 9)).astype(np.float32)
    inp = tgrpc.InferInput("x", list(f.shape), "FP32")
    inp.set_data_from_numpy(f)
    assert_bit_exact(client.infer("gives", [inp]).as_numpy(GIVES_OUT), torch_gives(f))


def test_bf16_in_json_is_read_as_numbers(served):
    """tritonclient sends BF16 in binary only, but a JSON body is served as for FP16: each
    value rounded to the nearest BF16."""
    host, _ = served
    values = [1.5, -2.0, 0.1, 3.140625, -0.0, 1e-40, 65504.0, 7.0, 1.0]
    body = {"inputs": [{"name": "input", "datatype": "BF16", "shape": [1, 9], "data": values}]}
    resp = httpx.post(f"http://{host}/v2/models/takes/infer", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    x = np.array([values], np.float32).astype(BF16)
    wide, _ = torch_takes(x)
    got = resp.json()["outputs"][0]
    assert got["datatype"] == "FP32"
    assert_bit_exact(np.array(got["data"], np.float32).reshape(wide.shape), wide)


# -- hostile BF16 -----------------------------------------------------------------------------


def post_json(host: str, model: str, entry: dict) -> httpx.Response:
    body = {"inputs": [{"name": "input", "shape": [1, 9], **entry}]}
    return httpx.post(f"http://{host}/v2/models/{model}/infer", json=body, timeout=60)


def post_binary(host: str, model: str, datatype: str, size: int, raw: bytes) -> httpx.Response:
    header = {
        "inputs": [
            {
                "name": "input",
                "datatype": datatype,
                "shape": [1, 9],
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    head = orjson.dumps(header)
    return httpx.post(
        f"http://{host}/v2/models/{model}/infer",
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=60,
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda h: post_binary(h, "takes", "BF16", 17, b"\0" * 17), "needs 18"),  # odd
        (lambda h: post_binary(h, "takes", "BF16", 18, b"\0" * 17), "past the end"),
        (lambda h: post_binary(h, "takes", "BF16", 18, b"\0" * 19), "no tensor claims"),
        (lambda h: post_binary(h, "takes", "FP16", 18, b"\0" * 18), "expects BF16"),
        (lambda h: post_binary(h, "gives", "BF16", 18, b"\0" * 18), "no input 'input'"),
        (lambda h: post_json(h, "takes", {"datatype": "BF16", "data": [1e39] * 9}), "range"),
        (lambda h: post_json(h, "takes", {"datatype": "BF16", "data": ["1"] * 9}), "text"),
        (lambda h: post_json(h, "takes", {"datatype": "bf16", "data": [1.0] * 9}), "unknown"),
        (lambda h: post_json(h, "takes", {"datatype": "FP32", "data": [1.0] * 9}), "BF16"),
    ],
)
def test_malformed_bf16_is_a_clear_400_and_the_model_still_serves(served, call, message):
    host, _ = served
    resp = call(host)
    assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    x = bf16_sample(1, 9)
    inp = thttp.InferInput("input", list(x.shape), "BF16")
    inp.set_data_from_numpy(x)
    got = thttp.InferenceServerClient(host).infer("takes", [inp]).as_numpy("same")
    assert_bit_exact(got, torch_takes(x)[1])


def test_grpc_bf16_with_an_odd_byte_count_is_invalid_argument(served):
    import grpc

    from gateway.grpc import inference_pb2 as pb
    from gateway.grpc.servicer import SERVICE

    _, target = served
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="BF16", shape=[1, 9])
    msg = pb.ModelInferRequest(model_name="takes", inputs=[tensor], raw_input_contents=[b"\0" * 17])
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(msg, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw contents hold 17 bytes but shape [1, 9] of BF16 needs 18" in err.value.details()
