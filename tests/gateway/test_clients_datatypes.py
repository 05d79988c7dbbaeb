"""Every Open Inference Protocol datatype a torch program takes or gives, through the real
clients (tritonclient.http, tritonclient.grpc, KServe's InferenceRESTClient) against a gateway
serving a user's program: outputs equal the program run in-process, dtype for dtype."""

from __future__ import annotations

import queue
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from ops.cli import main as cli

from .conftest import gateway_before_replica

# (input name, OIP datatype, numpy dtype): every fixed-width datatype torch has
TYPES = [
    ("b", "BOOL", np.bool_),
    ("u8", "UINT8", np.uint8),
    ("u16", "UINT16", np.uint16),
    ("u32", "UINT32", np.uint32),
    ("u64", "UINT64", np.uint64),
    ("i8", "INT8", np.int8),
    ("i16", "INT16", np.int16),
    ("i32", "INT32", np.int32),
    ("i64", "INT64", np.int64),
    ("f16", "FP16", np.float16),
    ("f32", "FP32", np.float32),
    ("f64", "FP64", np.float64),
]


class EveryType(torch.nn.Module):
    """One output per input, in the input's own dtype, and a reduction to FP64."""

    def forward(self, b, u8, u16, u32, u64, i8, i16, i32, i64, f16, f32, f64):
        return (
            torch.logical_not(b),
            u8 + 1,
            u16,
            (u32.to(torch.int64) + 7).to(torch.uint32),  # (uint32 arithmetic is not in torch)
            u64,
            i8 - 1,
            i16 * 2,
            i32 + 3,
            i64 * 3,
            f16 * 2,
            f32 + 0.5,
            f64 * 1.5,
            f32.sum(dim=1).to(torch.float64) + f64.sum(dim=1),
        )


def sample(rows: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _, _, dtype in TYPES:
        if dtype is np.bool_:
            out.append(rng.integers(0, 2, (rows, 4)).astype(bool))
        elif np.dtype(dtype).kind == "u":
            top = np.iinfo(dtype).max  # UINT64 past 2**63 too: no sign or width slip
            out.append(rng.integers(0, top, (rows, 4), dtype=np.uint64).astype(dtype))
        elif np.dtype(dtype).kind == "i":
            info = np.iinfo(dtype)
            out.append(rng.integers(info.min // 4, info.max // 4, (rows, 4)).astype(dtype))
        else:
            out.append(rng.standard_normal((rows, 4)).astype(dtype))
    return out


def reference(xs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        return [o.numpy() for o in EveryType()(*(torch.from_numpy(x) for x in xs))]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The program imported with `tidegate export`, a model server, a gateway (HTTP and gRPC):
    yields (http host:port, grpc target, output names)."""
    root = tmp_path_factory.mktemp("every-type")
    repo = _imported(EveryType(), [torch.from_numpy(x) for x in sample(2, 0)], root)
    with gateway_before_replica(repo, root) as (url, target):
        host = url.removeprefix("http://")
        meta = thttp.InferenceServerClient(host).get_model_metadata("every")
        yield host, target, meta


def _imported(module: torch.nn.Module, xs: list, root) -> Path:
    """``module`` exported with a dynamic batch and imported as "every" with `tidegate
    export`, as a user brings a program: the repository."""
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(module, tuple(xs), dynamic_shapes=tuple({0: batch} for _ in xs))
    torch.export.save(program, str(root / "program.pt2"))
    repo = root / "repo"
    assert cli(["export", str(root / "program.pt2"), "--name", "every", "--out", str(repo)]) == 0
    return repo


def http_inputs(xs, binary) -> list:
    inputs = []
    for i, ((name, datatype, _), x) in enumerate(zip(TYPES, xs, strict=True)):
        inp = thttp.InferInput(name, list(x.shape), datatype)
        inp.set_data_from_numpy(x, binary_data=binary if isinstance(binary, bool) else i % 2 == 0)
        inputs.append(inp)
    return inputs


def grpc_inputs(xs) -> list:
    inputs = []
    for (name, datatype, _), x in zip(TYPES, xs, strict=True):
        inp = tgrpc.InferInput(name, list(x.shape), datatype)
        inp.set_data_from_numpy(x)
        inputs.append(inp)
    return inputs


def assert_same(result, names, want) -> None:
    for name, expected in zip(names, want, strict=True):
        got = result.as_numpy(name)
        assert got is not None, f"{name} missing from the answer"
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name


def test_metadata_and_config_name_every_datatype(served):
    host, _, meta = served
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(n, d) for n, d, _ in TYPES]
    config = thttp.InferenceServerClient(host).get_model_config("every")
    assert [i["data_type"] for i in config["input"]] == ["TYPE_" + d for _, d, _ in TYPES]
    assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [4]


@pytest.mark.parametrize("binary", [True, False, "mixed"])
def test_tritonclient_http_every_datatype(served, binary):
    host, _, meta = served
    xs = sample(3, 1)
    names = [o["name"] for o in meta["outputs"]]
    result = thttp.InferenceServerClient(host).infer("every", http_inputs(xs, binary))
    assert_same(result, names, reference(xs))


def test_outputs_by_name_a_subset_binary_and_json_mixed(served):
    host, _, meta = served
    xs = sample(2, 2)
    want = reference(xs)
    names = [o["name"] for o in meta["outputs"]]
    picked = [3, 4, 9, 0, 12]  # UINT32, UINT64, FP16, BOOL, the FP64 sum
    asked = [thttp.InferRequestedOutput(names[i], binary_data=i % 2 == 0) for i in picked]
    c = thttp.InferenceServerClient(host)
    result = c.infer("every", http_inputs(xs, "mixed"), outputs=asked, request_id="r-7")
    assert_same(result, [names[i] for i in picked], [want[i] for i in picked])
    answer = result.get_response()
    assert [o["name"] for o in answer["outputs"]] == [names[i] for i in picked]  # asked order
    assert answer["id"] == "r-7"
    top = c.infer(
        "every",
        http_inputs(xs, True),
        outputs=[thttp.InferRequestedOutput(names[10], class_count=2, binary_data=False)],
    ).as_numpy(names[10])
    order = np.argsort(-want[10], axis=1, kind="stable")[:, :2]
    assert [[int(v.split(":")[1]) for v in row] for row in top.tolist()] == order.tolist()


def test_tritonclient_grpc_every_datatype_unary_async_and_stream(served):
    _, target, meta = served
    xs = sample(4, 3)
    want = reference(xs)
    names = [o["name"] for o in meta["outputs"]]
    c = tgrpc.InferenceServerClient(target)
    assert_same(c.infer("every", grpc_inputs(xs), client_timeout=60), names, want)
    answers: queue.Queue = queue.Queue()
    c.async_infer("every", grpc_inputs(xs), lambda result, error: answers.put((result, error)))
    result, error = answers.get(timeout=60)
    assert error is None
    assert_same(result, names, want)
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        c.async_stream_infer("every", grpc_inputs(xs), request_id="s-1")
        c.async_stream_infer("nope", grpc_inputs(xs), request_id="s-2")
        c.async_stream_infer("every", grpc_inputs(xs), request_id="s-3")
        got = [answers.get(timeout=60) for _ in range(3)]
    finally:
        c.stop_stream()
    assert got[0][1] is None and got[0][0].get_response().id == "s-1"
    assert_same(got[0][0], names, want)
    assert got[1][0] is None and "unknown model 'nope'" in str(got[1][1])
    assert got[2][1] is None and got[2][0].get_response().id == "s-3"  # the stream went on


# KServe's SDK and tritonclient.grpc both register `inference.*` protobuf messages in the default
# pool, so the KServe client runs in its own interpreter, as a KServe user's program would.
KSERVE_CLIENT = """
import asyncio, sys
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

TYPES = [("b", "BOOL", "bool"), ("u16", "UINT16", "uint16"), ("u64", "UINT64", "uint64"),
         ("i8", "INT8", "int8"), ("f64", "FP64", "float64")]

async def run(url, target, out):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        assert await client.is_model_ready(url, "every") is True
        rng = np.random.default_rng(5)
        xs = {n: rng.integers(0, 100, (2, 4)).astype(d) for n, _, d in TYPES}
        got = {}
        for binary in (False, True):
            inputs = []
            for name, datatype, _ in TYPES:
                inp = InferInput(name, [2, 4], datatype)
                inp.set_data_from_numpy(xs[name], binary_data=binary)
                inputs.append(inp)
            req = InferRequest(model_name="every", infer_inputs=inputs, request_id="k-1")
            answer = await client.infer(url, req, model_name="every")
            for o in answer.outputs:
                got[f"{binary}/{o.name}"] = o.as_numpy()
        grpc = InferenceGRPCClient(target)
        try:
            assert await grpc.is_model_ready("every") is True
            inputs = []
            for name, datatype, _ in TYPES:
                inp = InferInput(name, [2, 4], datatype)
                inp.set_data_from_numpy(xs[name])
                inputs.append(inp)
            req = InferRequest(model_name="every", infer_inputs=inputs, request_id="g-1")
            answer = await grpc.infer(req)
            for o in answer.outputs:
                got[f"grpc/{o.name}"] = o.as_numpy()
        finally:
            await grpc.close()
        np.savez(out, **{f"x/{n}": x for n, x in xs.items()}, **got)
    finally:
        await client.close()

asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3]))
"""
KSERVE_INPUTS = {"b", "u16", "u64", "i8", "f64"}


def test_kserve_rest_and_grpc_clients_several_datatypes(tmp_path, tmp_path_factory):
    # the model takes every datatype; KServe sends five of them, the rest are zeros from here
    root = tmp_path_factory.mktemp("kserve-every")
    module = EveryType()
    xs = [torch.from_numpy(x) for x in sample(2, 0)]
    dtypes = [(name in KSERVE_INPUTS, x.dtype) for (name, _, _), x in zip(TYPES, xs, strict=True)]

    class Five(torch.nn.Module):
        def forward(self, b, u16, u64, i8, f64):
            given = iter((b, u16, u64, i8, f64))
            rows = b.shape[0]
            args = [next(given) if k else torch.zeros(rows, 4, dtype=d) for k, d in dtypes]
            return module(*args)

    five = [x for (k, _), x in zip(dtypes, xs, strict=True) if k]
    repo = _imported(Five(), five, root)
    out = tmp_path / "kserve.npz"
    with gateway_before_replica(repo, root) as (url, target):
        proc = subprocess.run(
            [sys.executable, "-c", KSERVE_CLIENT, url, target, str(out)],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    given = [torch.from_numpy(got[f"x/{n}"]) for n, _, _ in TYPES if n in KSERVE_INPUTS]
    with torch.inference_mode():
        want = [w.numpy() for w in Five()(*given)]
    for way in ("False", "True", "grpc"):  # JSON, binary, KServe's gRPC client
        for i, expected in enumerate(want):
            answer = got[f"{way}/output__{i}"]
            assert answer.dtype == expected.dtype and np.array_equal(answer, expected), (way, i)


@pytest.mark.parametrize(
    "name,value,fits",
    [
        ("f16", 1e6, False),  # past FP16's 65504: was taken as inf
        ("f16", 30000.0, True),  # (the program doubles it: 60000 is still an FP16)
        ("f32", 1e300, False),  # past FP32's range: was taken as inf
        ("i8", 300, False),
        ("u64", 2**64, False),
        ("u64", 2**64 - 1, True),  # past int64: numpy read it as a float
        ("u32", -1, False),
    ],
)
def test_json_values_past_a_datatype_range_are_a_clear_400(served, name, value, fits):
    host, _, _ = served
    inputs = []
    for (input_name, datatype, _), x in zip(TYPES, sample(1, 4), strict=True):
        data = [value] * 4 if input_name == name else x.ravel().tolist()
        inputs.append({"name": input_name, "datatype": datatype, "shape": [1, 4], "data": data})
    r = httpx.post(f"http://{host}/v2/models/every/infer", json={"inputs": inputs})
    if fits:
        assert r.status_code == 200, r.text
        got = [o["data"] for o in r.json()["outputs"]]
        assert [value] * 4 in got or [2 * value] * 4 in got  # u64 as given, f16 doubled
    else:
        assert r.status_code == 400
        assert f"input '{name}'" in r.json()["error"] and "range" in r.json()["error"]


def test_class_count_is_per_batch_row_over_http_and_grpc(served):
    """A ``[batch]`` output (one score per row) classified: one class per row, as Triton does
    (it was the top k across the batch, mixing the rows)."""
    host, target, meta = served
    xs = sample(3, 6)
    want = reference(xs)[12]  # the FP64 sum, shape [3]
    name = meta["outputs"][12]["name"]
    rows = [[f"{v:f}:0"] for v in want.tolist()]
    for binary in (True, False):
        asked = [thttp.InferRequestedOutput(name, class_count=3, binary_data=binary)]
        got = thttp.InferenceServerClient(host).infer("every", http_inputs(xs, True), outputs=asked)
        labels = got.as_numpy(name)
        assert labels.shape == (3, 1)
        assert [[v.decode() if isinstance(v, bytes) else v for v in r] for r in labels] == rows
    asked = [tgrpc.InferRequestedOutput(name, class_count=3)]
    got = tgrpc.InferenceServerClient(target).infer("every", grpc_inputs(xs), outputs=asked)
    assert [[v.decode() for v in r] for r in got.as_numpy(name)] == rows


def test_config_of_a_fixed_batch_program_has_no_dynamic_batching():
    """Triton's config: dims with the batch and no dynamic_batching when max_batch_size is 0,
    the same over HTTP and gRPC (HTTP named a dynamic batcher for it)."""
    from gateway.grpc.servicer import model_config as grpc_config
    from vmpool.artifact import ModelConfig, TensorSpec
    from vmpool.wire import model_config

    fixed = ModelConfig(
        name="fixed",
        inputs=(TensorSpec("x", "FP32", (1, 10)),),
        outputs=(TensorSpec("y", "FP32", (1, 10)),),
        max_batch_size=1,
    )
    http = model_config(fixed)
    assert http["max_batch_size"] == 0 and http["input"][0]["dims"] == [1, 10]
    assert "dynamic_batching" not in http
    assert not grpc_config(fixed).HasField("dynamic_batching")
    batched = ModelConfig(
        name="batched",
        inputs=(TensorSpec("x", "FP32", (-1, 10)),),
        outputs=(TensorSpec("y", "FP32", (-1, 10)),),
        max_batch_size=4,
    )
    assert model_config(batched)["dynamic_batching"]["max_queue_delay_microseconds"] >= 0
    assert grpc_config(batched).HasField("dynamic_batching")
