"""A gRPC infer message past the size limit (``max_body_mb``) is refused by gRPC's core with
RESOURCE_EXHAUSTED before any handler runs. Every answer is counted with its code (issue 10
item 8): it is in ``tidegate_requests_total`` as a 413, as HTTP's, with an access-log line.
Before, it was in neither."""

from __future__ import annotations

import logging
import queue
import re

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.settings import Settings

from .conftest import running_model_server, serve_app

LIMIT_MB = 1.0


@pytest.fixture(scope="module")
def served(small_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("proto24-too-large")
    with running_model_server(small_repo, root / "ms.log", "mlp") as replica:
        settings = Settings.load(
            None,
            data_dir=root / "data",
            repo=small_repo,
            grpc_port=0,
            max_body_mb=LIMIT_MB,
            vm={"provisioner": "static", "urls": [replica]},
            burst={"enabled": False},
        )
        app = create_app(settings)
        with serve_app(app) as url:
            yield url, app.state.gateway.grpc.target


def count_413(url: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("tidegate_requests_total{") and 'code="413"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_logged_413(caplog, method: str) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "tidegate.access"]
    pattern = rf"path=/inference\.GRPCInferenceService/{method} status=413"
    assert any(re.search(pattern, line) for line in lines), lines


def _input(rows: int) -> tgrpc.InferInput:
    x = np.ones((rows, 784), np.float32)
    inp = tgrpc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def infer(target: str, rows: int) -> np.ndarray:
    inp = _input(rows)
    client = tgrpc.InferenceServerClient(target)
    try:
        return client.infer("mlp", [inp], client_timeout=60).as_numpy("output")
    finally:
        client.close()


def test_an_oversized_grpc_message_is_counted_and_logged_as_a_413(served, caplog):
    url, target = served
    before = count_413(url)
    with caplog.at_level(logging.INFO, logger="tidegate.access"):
        with pytest.raises(InferenceServerException) as err:
            infer(target, 400)  # 400 x 784 FP32: 1.25 MB, past 1 MB
    assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert count_413(url) == before + 1
    assert_logged_413(caplog, "ModelInfer")
    assert infer(target, 4).shape == (4, 10)  # and the next call is served
    assert count_413(url) == before + 1


def test_a_message_past_twice_the_limit_is_counted_too(served):
    # past the core's own cap (messages.CORE_CAP_FACTOR x the limit): the core refuses it
    url, target = served
    before = count_413(url)
    with pytest.raises(InferenceServerException) as err:
        infer(target, 700)  # 2.1 MB, past 2 x 1 MB
    assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert count_413(url) == before + 1


def test_an_oversized_message_on_a_stream_is_its_own_413_and_the_stream_goes_on(served, caplog):
    # grpc.aio ended the stream as if the client had closed it: no count, no line, and the
    # stream's other requests lost
    url, target = served
    before = count_413(url)
    answers: queue.Queue = queue.Queue()
    client = tgrpc.InferenceServerClient(target)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    with caplog.at_level(logging.INFO, logger="tidegate.access"):
        try:
            for i, rows in enumerate((4, 400, 4)):  # 400 x 784 FP32: 1.25 MB, past 1 MB
                client.async_stream_infer("mlp", [_input(rows)], request_id=f"s-{i}")
            got = [answers.get(timeout=60) for _ in range(3)]
        finally:
            client.stop_stream()
            client.close()
    assert got[0][1] is None and got[0][0].as_numpy("output").shape == (4, 10)
    assert got[1][0] is None and "over the limit of 1048576 bytes" in str(got[1][1])
    assert got[2][1] is None and got[2][0].get_response().id == "s-2"
    assert count_413(url) == before + 1
    assert_logged_413(caplog, "ModelStreamInfer")
