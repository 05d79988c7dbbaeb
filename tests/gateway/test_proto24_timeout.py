"""Triton's ``timeout`` request parameter (microseconds): a request still waiting in the model's
queue when it runs out is dropped unrun with 503 / UNAVAILABLE "Request timeout expired", as
Triton's scheduler rejects it. Before, the gateway and the model server validated it and ran
the request anyway, however long it had waited.

The model waits DELAY_MS a batch and takes one row a batch: of three requests sent together,
two wait behind the first for at least DELAY_MS, far past a 50 ms timeout."""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from vmpool.codec import encode_request
from vmpool.export import export_zoo

from .conftest import gateway_on, running_model_server

DELAY_MS = 400.0
SHORT_US = 50_000  # 50 ms: expires behind a DELAY_MS batch
X = np.ones((1, 16), np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model server URL, gateway HTTP host:port, gRPC target)."""
    root = tmp_path_factory.mktemp("proto24-timeout")
    repo = root / "repo"
    export_zoo("delay", repo, max_batch_size=1, options={"delay_ms": DELAY_MS, "per_item_ms": 0})
    with running_model_server(repo, root / "ms.log") as replica:
        with gateway_on(replica, repo, root / "data") as (url, target):
            yield replica, url.removeprefix("http://"), target


def executions(replica: str) -> int:
    """The model server's count of batches it ran (Triton's execution_count)."""
    stats = httpx.get(f"{replica}/v2/models/delay/stats", timeout=30).json()
    return stats["model_stats"][0]["execution_count"]


def together(calls) -> list:
    """Run ``calls`` at once on threads: each one's result, or the exception it raised."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.exception() or f.result() for f in futures]


def check_outcomes(results: list, replica: str, before: int, unavailable: str) -> None:
    """The untimed first call is served; of the timed ones, each is served or dropped with
    Triton's message, at least one is dropped, and no dropped one ran on the model."""
    assert not isinstance(results[0], Exception), results[0]
    dropped = [r for r in results[1:] if isinstance(r, Exception)]
    assert dropped, "every request was served: the timeout was not acted on"
    for error in dropped:
        assert isinstance(error, InferenceServerException), error
        assert "Request timeout expired" in error.message() and error.status() == unavailable
    assert executions(replica) - before == len(results) - len(dropped)


def test_http_requests_queued_past_their_timeout_are_dropped_unrun(served):
    replica, host, _ = served
    before = executions(replica)

    def call(timeout_us):
        client = thttp.InferenceServerClient(host, network_timeout=60)
        inp = thttp.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        return client.infer("delay", [inp], timeout=timeout_us).as_numpy("output")

    results = together([lambda: call(None), lambda: call(SHORT_US), lambda: call(SHORT_US)])
    check_outcomes(results, replica, before, "503")


def test_grpc_requests_queued_past_their_timeout_are_unavailable(served):
    replica, _, target = served
    before = executions(replica)

    def call(timeout_us):
        client = tgrpc.InferenceServerClient(target)
        inp = tgrpc.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        kwargs = {} if timeout_us is None else {"timeout": timeout_us}
        return client.infer("delay", [inp], client_timeout=60, **kwargs).as_numpy("output")

    results = together([lambda: call(None), lambda: call(SHORT_US), lambda: call(SHORT_US)])
    check_outcomes(results, replica, before, "StatusCode.UNAVAILABLE")


def test_a_timeout_longer_than_the_wait_is_served(served):
    _, host, _ = served

    def call():
        client = thttp.InferenceServerClient(host, network_timeout=60)
        inp = thttp.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        return client.infer("delay", [inp], timeout=60_000_000).as_numpy("output")

    for result in together([call, call]):
        assert np.array_equal(result, X)


def test_the_model_server_called_directly_drops_it_as_triton_does(served):
    replica, _, _ = served
    body, length = encode_request({"input": X})
    timed, timed_length = encode_request({"input": X}, parameters={"timeout": SHORT_US})

    def post(content, header_length):
        return httpx.post(
            f"{replica}/v2/models/delay/infer",
            content=content,
            headers={"Inference-Header-Content-Length": str(header_length)},
            timeout=60,
        )

    answers = together(
        [lambda: post(body, length), lambda: post(timed, timed_length)]
        + [lambda: post(timed, timed_length)]
    )
    assert answers[0].status_code == 200
    dropped = [a for a in answers[1:] if a.status_code != 200]
    assert dropped
    for answer in dropped:
        assert answer.status_code == 503
        assert answer.json()["error"].startswith("Request timeout expired: waited")
        assert answer.headers["x-tidegate-queue-timeout"] == "expired"
