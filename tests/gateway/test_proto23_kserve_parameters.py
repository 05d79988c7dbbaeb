"""KServe's SDK (REST and gRPC, v2) with request parameters, now that the ones Triton reads
itself are type-checked: what a KServe user sends (an int priority, custom strings, numbers and
booleans) is served over both; a string priority is a 400 the SDK raises with the gateway's
message. KServe's SDK and tritonclient.grpc both register ``inference.*`` protobuf messages, so
the KServe client runs in its own interpreter (as in test_clients_datatypes)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import gateway_on, running_model_server

KSERVE_CLIENT = """
import asyncio, sys
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

X = np.ones((2, 784), np.float32)
# (timeout: 60 s in us; a short one may expire in the queue, tests/gateway/test_proto24_timeout)
TAKEN = {"priority": 2, "timeout": 60_000_000, "custom": "v", "n": 1.5, "flag": True}

def request(params, binary=True):
    inp = InferInput("input", [2, 784], "FP32")
    inp.set_data_from_numpy(X, binary_data=binary)
    return InferRequest(model_name="mlp", infer_inputs=[inp], request_id="k", parameters=params)

async def run(url, target):
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        for binary in (True, False):
            answer = await rest.infer(url, request(TAKEN, binary), model_name="mlp")
            assert answer.outputs[0].as_numpy().shape == (2, 10) and answer.id == "k"
        try:
            await rest.infer(url, request({"priority": "high"}), model_name="mlp")
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code == 400, exc.response.text
            assert "'priority' must be an unsigned integer" in exc.response.json()["error"]
        else:
            raise AssertionError("a string priority was served")
    finally:
        await rest.close()
    grpc = InferenceGRPCClient(target)
    try:
        taken = {k: v for k, v in TAKEN.items() if k != "n"}  # (its to_grpc takes no float)
        answer = await grpc.infer(request(taken))
        assert answer.outputs[0].as_numpy().shape == (2, 10) and answer.id == "k"
    finally:
        await grpc.close()
    print("ok")

asyncio.run(run(sys.argv[1], sys.argv[2]))
"""


def test_kserve_sdk_parameters_are_served_and_a_string_priority_refused(
    small_repo, tmp_path_factory
):
    root = tmp_path_factory.mktemp("proto23-kserve")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        with gateway_on(replica, small_repo, root / "data") as (url, target):
            proc = subprocess.run(
                [sys.executable, "-c", KSERVE_CLIENT, url, target],
                capture_output=True,
                text=True,
                timeout=180,
            )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
