"""Hostile and careless gRPC clients (raw stubs and ``tritonclient.grpc``) against a real
gateway on loopback: each mistake is INVALID_ARGUMENT or NOT_FOUND with a message naming it,
never UNKNOWN/INTERNAL or a traceback in the log, and the next good call is answered correctly."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings
from vmpool.artifact import load_artifact

from .conftest import serve_app

INFER = "/inference.GRPCInferenceService/ModelInfer"
X = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
X_BYTES = X.tobytes()


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    """(gRPC target, mlp module, gateway state) of a gateway with no tenants."""
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("hostile-grpc"),
        repo=small_repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app):
        state = app.state.gateway
        yield state.grpc.target, load_artifact(small_repo, "mlp").load_module(), state


@pytest.fixture(scope="module")
def channel(gateway):
    with grpc.insecure_channel(gateway[0]) as ch:
        yield ch


@pytest.fixture
def no_tracebacks(caplog):
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def reference(module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


def request(
    *,
    model: str = "mlp",
    version: str = "",
    name: str = "input",
    datatype: str = "FP32",
    shape=(2, 784),
    raw=(X_BYTES,),
    fp32=None,
    int64=None,
    outputs=(),
    twice: bool = False,
) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, model_version=version)
    for _ in range(2 if twice else 1):
        t = msg.inputs.add(name=name, datatype=datatype)
        t.shape.extend(shape)
    msg.raw_input_contents.extend(raw)
    if fp32 is not None:
        msg.inputs[0].contents.fp32_contents.extend(fp32)
    if int64 is not None:
        msg.inputs[0].contents.int64_contents.extend(int64)
    for o in outputs:
        msg.outputs.add(name=o)
    return msg


def infer(channel, msg, *, serializer=pb.ModelInferRequest.SerializeToString):
    call = channel.unary_unary(
        INFER, request_serializer=serializer, response_deserializer=pb.ModelInferResponse.FromString
    )
    return call(msg, timeout=30)


def still_serving(channel, module) -> None:
    x = np.random.default_rng(9).standard_normal((1, 784)).astype(np.float32)
    resp = infer(channel, request(shape=(1, 784), raw=(x.tobytes(),)))
    got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, reference(module, x), rtol=1e-4, atol=1e-5)


def shared_memory(where: str) -> pb.ModelInferRequest:
    """tritonclient's set_shared_memory on the input or the output (a region never registered:
    the output was answered in the message while the client read its region)."""
    msg = request(raw=() if where == "input" else (X_BYTES,), outputs=("output",))
    params = (msg.inputs[0] if where == "input" else msg.outputs[0]).parameters
    params["shared_memory_region"].string_param = "region"
    params["shared_memory_byte_size"].int64_param = 80
    return msg


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
CASES = {
    "two raw entries for one input": (request(raw=(X.tobytes(),) * 2), INVALID, "2 entries"),
    "raw entries for half the inputs": (request(twice=True), INVALID, "1 entries for 2"),
    "raw short": (request(raw=(X.tobytes()[:-4],)), INVALID, "hold 6268 bytes"),
    "raw long": (request(raw=(X.tobytes() + b"abcd",)), INVALID, "hold 6276 bytes"),
    "raw empty": (request(raw=(b"",)), INVALID, "hold 0 bytes"),
    "no data at all": (request(raw=()), INVALID, "holds 0 values"),
    "contents and raw both": (
        request(fp32=X.ravel().tolist()),
        INVALID,
        "both contents and raw_input_contents",
    ),
    "contents short": (request(raw=(), fp32=[1.0] * 10), INVALID, "holds 10 values"),
    "contents of another type": (request(raw=(), int64=[1] * 1568), INVALID, "fp32_contents"),
    "unknown datatype": (request(datatype="XX"), INVALID, "unknown datatype 'XX'"),
    "empty datatype": (request(datatype=""), INVALID, "unknown datatype ''"),
    "wrong datatype": (request(datatype="FP64", shape=(1, 784)), INVALID, "expects FP32"),
    "BYTES": (request(datatype="BYTES"), INVALID, "BYTES"),
    "negative shape": (request(shape=(-2, -784)), INVALID, "negative dimension"),
    "huge shape": (request(shape=(1, 2**40)), INVALID, "4398046511104"),
    "shape product overflows": (request(shape=(2**62, 2**62)), INVALID, "needs"),
    "batch of 0": (request(shape=(0, 784), raw=(b"",)), INVALID, "at least 1"),
    "batch over max_batch_size": (
        request(shape=(33, 784), raw=(bytes(33 * 784 * 4),)),
        INVALID,
        "exceeds max_batch_size",
    ),
    "unknown input": (request(name="nope"), INVALID, "no input 'nope'"),
    "unknown output": (request(outputs=("nope",)), INVALID, "no output 'nope'"),
    "unknown model": (request(model="nope"), NOT_FOUND, "unknown model 'nope'"),
    "shared memory input": (shared_memory("input"), INVALID, "shared memory is not supported"),
    "shared memory output": (shared_memory("output"), INVALID, "shared memory is not supported"),
    "path traversal": (request(model="../../etc"), NOT_FOUND, "unknown model"),
    "unicode and NUL": (request(model="mlé\x00"), NOT_FOUND, "unknown model"),
    "unknown version": (request(version="2"), NOT_FOUND, "no version '2'"),
    # (Triton's GetModelVersionFromString: not an integer is INVALID_ARG)
    "version traversal": (request(version="../1"), INVALID, "integral value"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistakes_get_the_right_status_and_the_server_goes_on(
    gateway, channel, no_tracebacks, case
):
    msg, code, says = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, msg)
    assert err.value.code() == code, err.value.details()
    assert says in err.value.details()
    still_serving(channel, gateway[1])


def test_a_message_that_is_not_protobuf_is_invalid_argument(gateway, channel, no_tracebacks):
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, b"\xff\xff\xff\xff garbage", serializer=lambda b: b)
    assert err.value.code() == INVALID
    assert "malformed request message" in err.value.details()
    still_serving(channel, gateway[1])


def test_contents_alone_and_raw_alone_give_the_same_answer(gateway, channel):
    raw = infer(channel, request())
    typed = infer(channel, request(raw=(), fp32=X.ravel().tolist()))
    assert raw.raw_output_contents[0] == typed.raw_output_contents[0]
    got = np.frombuffer(raw.raw_output_contents[0], np.float32).reshape(2, 10)
    np.testing.assert_allclose(got, reference(gateway[1], X), rtol=1e-4, atol=1e-5)


def test_same_request_header_with_other_bytes_gets_its_own_answer(gateway, channel):
    for seed in range(3):
        x = np.random.default_rng(20 + seed).standard_normal((2, 784)).astype(np.float32)
        resp = infer(channel, request(raw=(x.tobytes(),)))
        got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 10)
        np.testing.assert_allclose(got, reference(gateway[1], x), rtol=1e-4, atol=1e-5)


def test_tritonclient_sees_not_found_and_invalid_argument(gateway, no_tracebacks):
    client = tgrpc.InferenceServerClient(gateway[0])
    empty = tgrpc.InferInput("input", [1, 784], "FP32")  # no data set
    calls = {
        "StatusCode.NOT_FOUND": [
            lambda: client.infer("nope", [empty]),
            lambda: client.get_model_metadata("nope"),
            lambda: client.get_model_metadata("mlp", "7"),
            lambda: client.get_model_config("nope"),
        ],
        "StatusCode.INVALID_ARGUMENT": [lambda: client.infer("mlp", [empty])],
    }
    for status, fns in calls.items():
        for fn in fns:
            with pytest.raises(InferenceServerException) as err:
                fn()
            assert err.value.status() == status, err.value.message()
    good = tgrpc.InferInput("input", [2, 784], "FP32")
    good.set_data_from_numpy(X)
    got = client.infer("mlp", [good]).as_numpy("output")
    np.testing.assert_allclose(got, reference(gateway[1], X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "msg, code",
    [
        (request(model="m" * 100_000), NOT_FOUND),
        (request(name="n" * 100_000), INVALID),
        (request(datatype="Q" * 100_000), INVALID),
    ],
    ids=["model name", "input name", "datatype"],
)
def test_a_huge_name_gets_its_status_with_a_short_message(gateway, channel, msg, code):
    """(gRPC sends the message in trailing metadata, which clients cap at 8 KiB by default.)"""
    with pytest.raises(grpc.RpcError) as err:
        infer(channel, msg)
    assert err.value.code() == code, err.value.details()
    assert len(err.value.details()) < 4096
    still_serving(channel, gateway[1])


def test_simultaneous_calls_each_get_their_own_answer(gateway, channel):
    import threading

    xs = [
        np.random.default_rng(50 + i % 4).standard_normal((2, 784)).astype(np.float32)
        for i in range(12)
    ]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(xs))

    def call(i: int) -> None:
        start.wait()
        resp = infer(channel, request(raw=(xs[i].tobytes(),)))
        got[i] = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 10)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(len(xs)))  # identical calls (i % 4) included
    for i, x in enumerate(xs):
        np.testing.assert_allclose(got[i], reference(gateway[1], x), rtol=1e-4, atol=1e-5)


def test_a_refusal_to_retry_says_when_in_its_trailing_metadata(gateway, channel, no_tracebacks):
    """The in-flight body budget's UNAVAILABLE carries ``retry-after`` as its HTTP 503 does
    (it carried none), and none of the HTTP answer's hop-by-hop headers."""
    budget = gateway[2].body_budget
    hog = budget.lease()
    hog.take(budget.limit_bytes)  # a body as large as the budget, in flight
    try:
        with pytest.raises(grpc.RpcError) as err:
            infer(channel, request())
    finally:
        hog.release()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert "retry shortly" in err.value.details()
    trailing = dict(err.value.trailing_metadata())
    assert trailing["retry-after"] == "1" and "connection" not in trailing
    still_serving(channel, gateway[1])


@pytest.mark.parametrize("status", [429, 502, 503])
def test_every_retryable_refusal_carries_retry_after(status):
    """RESOURCE_EXHAUSTED (for 429) and UNAVAILABLE always say when to retry; a 413's
    RESOURCE_EXHAUSTED does not (the same message is refused again)."""
    from gateway.errors import TidegateError
    from gateway.grpc.status import error_trailing
    from vmpool.codec import CodecError

    for exc in (TidegateError("busy", status), CodecError("busy", status, {"connection": "close"})):
        assert dict(error_trailing(exc))["retry-after"] == "1"
    given = TidegateError("busy", status, headers={"Retry-After": "7"})
    assert dict(error_trailing(given)) == {"retry-after": "7"}
    assert "retry-after" not in dict(error_trailing(TidegateError("too large", 413)))
    odd = TidegateError("no", 401, headers={"WWW-Authenticate": "Bearer", "X-Name": "mlé\n"})
    assert dict(error_trailing(odd)) == {"www-authenticate": "Bearer"}  # (gRPC refuses the other)
