"""tritonclient's streaming with ``enable_empty_final_response``, the way clients of decoupled
models read a request's end: every answer on the stream carries ``triton_final_response`` as
Triton's stream sets it (true on a request's last answer, here its only one). Before, the flag
never came and a client waiting for it per request waited for ever. A failed request's answer
names its id, model and version, as Triton's does."""

from __future__ import annotations

import asyncio
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio

from gateway.grpc import inference_pb2 as pb
from gateway.grpc.servicer import SERVICE

from .conftest import gateway_on, running_model_server

X = np.random.default_rng(23).standard_normal((2, 784)).astype(np.float32)


@pytest.fixture(scope="module")
def target(small_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto23-stream")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        with gateway_on(replica, small_repo, root / "data") as (_, grpc_target):
            yield grpc_target


def final_flag(result) -> bool:
    params = result.get_response().parameters
    return "triton_final_response" in params and params["triton_final_response"].bool_param


def test_a_client_waiting_for_each_requests_final_response_gets_every_one(target):
    client = tgrpc.InferenceServerClient(target)
    got: queue.Queue = queue.Queue()
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    ended, errors = set(), 0
    try:
        for k in range(20):
            model = "nope" if k % 5 == 4 else "mlp"
            client.async_stream_infer(
                model, [inp], request_id=f"r{k}", enable_empty_final_response=True
            )
        while len(ended) + errors < 20:  # (how a decoupled client loops: until every final)
            result, error = got.get(timeout=60)
            if error is not None:
                errors += 1
            elif final_flag(result):
                ended.add(result.get_response().id)
    finally:
        client.stop_stream()
        client.close()
    assert errors == 4 and ended == {f"r{k}" for k in range(20) if k % 5 != 4}


def test_the_aio_client_stream_reads_the_final_flag(target):
    async def run() -> list[tuple[str, bool]]:
        client = tgrpc_aio.InferenceServerClient(target)
        inp = tgrpc_aio.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)

        async def requests():
            for k in range(5):
                yield {
                    "model_name": "mlp",
                    "inputs": [inp],
                    "request_id": f"a{k}",
                    "enable_empty_final_response": True,
                }

        out = []
        try:
            async for result, error in client.stream_infer(requests()):
                assert error is None
                out.append((result.get_response().id, final_flag(result)))
        finally:
            await client.close()
        return out

    assert asyncio.run(run()) == [(f"a{k}", True) for k in range(5)]


def test_a_failed_answer_names_its_request(target):
    msg = pb.ModelInferRequest(model_name="mlp", model_version="1", id="bad-1")
    msg.inputs.add(name="input", datatype="FP32", shape=[2, 783])
    msg.raw_input_contents.append(X[:, :783].tobytes())
    with grpc.insecure_channel(target) as channel:
        stream = channel.stream_stream(
            f"/{SERVICE}/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        (answer,) = list(stream(iter([msg]), timeout=60))
    assert "783" in answer.error_message
    infer = answer.infer_response
    assert (infer.id, infer.model_name, infer.model_version) == ("bad-1", "mlp", "1")
    assert infer.parameters["triton_final_response"].bool_param
