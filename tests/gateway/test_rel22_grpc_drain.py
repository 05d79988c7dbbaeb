"""SIGTERM of `tidegate serve` with gRPC calls in flight: from the signal on, a new gRPC call is
refused UNAVAILABLE (as HTTP stops accepting) while the calls in flight finish and are charged
once; a stream whose client never closes it gets its answers and then ends, without holding
the shutdown for gRPC's 30 s grace."""

from __future__ import annotations

import queue
import re
import signal
import socket
import sqlite3
import threading
import time
from urllib.parse import urlsplit

import grpc
import httpx
import numpy as np
import pytest

from gateway.grpc import inference_pb2 as pb
from vmpool.export import export_zoo
from vmpool.procs import kill_group

from .test_crash_no_loss import _serve

GRPC = re.compile(rb"gRPC \(tritonclient\.grpc\): (127\.0\.0\.1:\d+)")
SERVICE = "/inference.GRPCInferenceService/"
ROUTE = (("x-tidegate-route", "vm"),)
ROWS, PER_ROW_MS = 4, 500.0  # a request waits 2 s; the warm-up's batch-1 calls 0.5 s each


def _request(rid: str) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[ROWS, 16])
    return pb.ModelInferRequest(
        model_name="delay",
        id=rid,
        inputs=[tensor],
        raw_input_contents=[np.ones((ROWS, 16), np.float32).tobytes()],
    )


def _unary(channel: grpc.Channel):
    return channel.unary_unary(
        SERVICE + "ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def _stream(channel: grpc.Channel):
    return channel.stream_stream(
        SERVICE + "ModelStreamInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )


@pytest.fixture
def gateway(tmp_path):
    """(process, HTTP URL, gRPC target, data dir) of a `tidegate serve` of a delay model (2 s a
    request)."""
    data = tmp_path / "data"
    export_zoo("delay", data / "models", options={"delay_ms": 0.0, "per_item_ms": PER_ROW_MS})
    log = tmp_path / "serve.log"
    proc, url = _serve(data, {"TIDEGATE_GRPC_PORT": "0", "TIDEGATE_DEMO_MODEL": "delay"}, log)
    try:
        yield proc, url, GRPC.search(log.read_bytes()).group(1).decode(), data
    finally:
        kill_group(proc.pid)


def _wait_in_flight(url: str, n: int) -> None:
    deadline = time.monotonic() + 60
    pattern = re.compile(r"^tidegate_requests_in_flight (\S+)$", re.M)
    while float(pattern.search(httpx.get(f"{url}/metrics").text).group(1)) < n:
        assert time.monotonic() < deadline, f"never {n} requests in flight"
        time.sleep(0.02)


def _wait_http_closed(url: str) -> None:
    """Until the gateway's HTTP listener refuses connections: its drain has begun."""
    parts = urlsplit(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    raise AssertionError("the HTTP listener stayed open after SIGTERM")


def _charged(data) -> dict[str, int]:
    with sqlite3.connect(data / "ledger.sqlite") as db:
        rows = db.execute("SELECT id, count(*) FROM requests WHERE status = 200 GROUP BY id")
        return dict(rows.fetchall())


@pytest.mark.slow
def test_a_new_grpc_call_during_the_http_drain_is_refused_and_in_flight_ones_finish(gateway):
    """Before, gRPC took (and ran) new calls until HTTP's drain had ended."""
    proc, url, target, data = gateway
    http_call = threading.Thread(
        target=lambda: results.put(
            httpx.post(
                f"{url}/v2/models/delay/infer",
                json={"id": "h1", "inputs": [_json_input()]},
                headers={"x-tidegate-route": "vm"},
                timeout=60,
            ).status_code
        )
    )
    results: queue.Queue = queue.Queue()
    with grpc.insecure_channel(target) as channel:
        in_flight = _unary(channel).future(_request("g1"), metadata=ROUTE, timeout=60)
        http_call.start()
        _wait_in_flight(url, 2)
        proc.send_signal(signal.SIGTERM)
        _wait_http_closed(url)
        with pytest.raises(grpc.RpcError) as refused:
            _unary(channel)(_request("g-late"), metadata=ROUTE, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        assert in_flight.result().id == "g1"
    http_call.join(60)
    assert results.get_nowait() == 200
    assert proc.wait(60) == 0
    assert _charged(data) == {"g1": 1, "h1": 1}  # the refused call was not run


def _json_input() -> dict:
    return {"name": "input", "shape": [ROWS, 16], "datatype": "FP32", "data": [1.0] * 16 * ROWS}


@pytest.mark.slow
def test_a_stream_its_client_never_closes_ends_once_answered_and_does_not_hold_shutdown(gateway):
    """Before, the gateway waited out gRPC's 30 s grace for such a stream, then cut it."""
    proc, url, target, data = gateway
    never = threading.Event()

    def requests():
        yield _request("s1")
        yield _request("s2")
        never.wait(120)  # the client neither sends more nor closes its side

    answers: list[str] = []
    ended: list[grpc.StatusCode] = []

    def read(channel) -> None:
        try:
            for response in _stream(channel)(requests(), metadata=ROUTE):
                answers.append(response.error_message or response.infer_response.id)
        except grpc.RpcError as exc:
            ended.append(exc.code())

    with grpc.insecure_channel(target) as channel:
        reader = threading.Thread(target=read, args=(channel,))
        reader.start()
        _wait_in_flight(url, 2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        stopped_s = time.monotonic() - t0
        reader.join(30)
        never.set()
    assert answers == ["s1", "s2"]
    assert ended == [grpc.StatusCode.UNAVAILABLE]
    assert stopped_s < 15, stopped_s  # in-flight answers (2 s each), 1 s linger, then the rest
    assert _charged(data) == {"s1": 1, "s2": 1}
