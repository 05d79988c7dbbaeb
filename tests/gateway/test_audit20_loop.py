"""A request with a huge JSON header (or a gRPC message of many entries) is decoded off the
event loop: other clients are answered meanwhile.

Before: a million one-element inputs (60 MB of JSON, within the body limit) held the loop
18.8 s on `tidegate serve` (17 s over gRPC); every health probe and answer waited behind it.
Measured here as a ratio in one run: the slowest health probe answered while the big request
was in flight, against that request's own time (near 1 before; the JSON parse alone after).
"""

from __future__ import annotations

import threading
import time

import grpc
import httpx
import orjson
import pytest

from gateway.grpc import inference_pb2 as pb

from .conftest import gateway_on

INPUTS = 300_000


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(HTTP base URL, gRPC target)."""
    with gateway_on(model_server, small_repo, tmp_path_factory.mktemp("audit20-loop")) as urls:
        yield urls


def probed_while(url: str, big) -> tuple[float, float, int]:
    """Run ``big()`` while probing /v2/health/live back to back on another connection:
    (big's seconds, the slowest probe's seconds, probes answered)."""
    done = threading.Event()
    slowest, answered = [0.0], [0]

    def probe():
        with httpx.Client(base_url=url, timeout=120) as client:
            while not done.is_set():
                t0 = time.perf_counter()
                assert client.get("/v2/health/live").status_code == 200
                slowest[0] = max(slowest[0], time.perf_counter() - t0)
                answered[0] += 1

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        t0 = time.perf_counter()
        big()
        took = time.perf_counter() - t0
    finally:
        done.set()
        prober.join(120)
    return took, slowest[0], answered[0]


def test_a_huge_json_header_does_not_hold_up_other_clients(gateway):
    url, _ = gateway
    entries = [
        {"name": f"i{n}", "shape": [1], "datatype": "FP32", "data": [1]} for n in range(INPUTS)
    ]
    body = orjson.dumps({"inputs": entries})

    def big():
        r = httpx.post(url + "/v2/models/mlp/infer", content=body, timeout=120)
        assert r.status_code == 400 and "has no input 'i0'" in r.json()["error"], r.text

    took, slowest, answered = probed_while(url, big)
    assert answered >= 3, (took, slowest, answered)
    assert slowest < 0.5 * took, (took, slowest, answered)


def test_a_grpc_message_of_many_inputs_does_not_hold_up_other_clients(gateway):
    url, target = gateway
    tensor = pb.ModelInferRequest.InferInputTensor
    contents = pb.InferTensorContents(fp32_contents=[1.0])
    request = pb.ModelInferRequest(
        model_name="mlp",
        inputs=[
            tensor(name=f"i{n}", datatype="FP32", shape=[1], contents=contents)
            for n in range(INPUTS)
        ],
    )

    def big():
        with grpc.insecure_channel(target) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as err:
                infer(request, timeout=120)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()

    took, slowest, answered = probed_while(url, big)
    assert answered >= 3, (took, slowest, answered)
    assert slowest < 0.5 * took, (took, slowest, answered)
