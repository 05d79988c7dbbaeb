"""Property-based fuzz of the gateway's gRPC service against a real model server on loopback.

Hypothesis builds ModelInferRequest messages field by field: a valid request for a model (the
MLP, or a program taking every fixed-width datatype), then up to three hostile mutations
(datatypes, shapes, raw contents vs typed contents and their counts, parameters of every kind,
requested outputs, the classification parameter, ids, model names and versions). Whatever comes:
never INTERNAL or UNKNOWN, never a hang, every error with a message, nothing logged as a failure;
and a request it answers gets the same tensors over HTTP. The other RPCs get odd names, garbage
messages and odd metadata the same way.
(``FUZZ_EXAMPLES=2000``: that many fresh random examples per test; see fuzz_support.py.)
"""

from __future__ import annotations

from contextlib import contextmanager

import grpc
import httpx
import numpy as np
import orjson
import pytest
import torch
import tritonclient.http as thttp
from hypothesis import assume, event, example, given
from hypothesis import strategies as st
from tritonclient.utils import deserialize_bytes_tensor

from gateway.app import create_app
from gateway.grpc import inference_pb2 as pb
from gateway.settings import Settings
from gateway.grpc.tensors import CONTENTS_FIELD
from vmpool.export import export_zoo
from vmpool.wire import NUMPY_DTYPES

from .conftest import running_model_server, serve_app
from .fuzz_support import fuzz_settings, logged_failures
from .grpc_fuzz_cases import SERVICE, infer_cases, metadata_strategy, odd_names
from .test_clients_datatypes import TYPES, EveryType, _imported, sample

INFER_EXAMPLES = 150  # ~1/3 valid: each of those is also sent over HTTP
OTHER_EXAMPLES = 60
FUZZ = fuzz_settings(INFER_EXAMPLES)
CALL_TIMEOUT_S = 30  # a call past this is a hang
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    """(repository, model server URL, scratch dir): the MLP and the every-datatype program."""
    root = tmp_path_factory.mktemp("fuzz-grpc")
    repo = _imported(EveryType(), [torch.from_numpy(x) for x in sample(2, 0)], root)
    export_zoo("mlp", repo)
    with running_model_server(repo, root / "ms.log") as url:
        yield repo, url, root


@contextmanager
def gateway(replica, name: str, **settings):
    """(HTTP base URL, gRPC channel, log failures) of a gateway in front of ``replica``."""
    repo, replica_url, root = replica
    app = create_app(
        Settings.load(
            None,
            data_dir=root / name,
            repo=repo,
            grpc_port=0,
            vm={"provisioner": "static", "urls": [replica_url]},
            burst={"enabled": False},
            **settings,
        )
    )
    with logged_failures() as failures, serve_app(app) as url:
        with grpc.insecure_channel(app.state.gateway.grpc.target) as channel:
            yield url, channel, failures


@pytest.fixture(scope="module")
def served(replica):
    """A gateway without tenants."""
    with gateway(replica, "open") as served:
        yield served


def unary(channel, method: str, response_type):
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )


def call(channel, method: str, msg, response_type, metadata=()):
    """(response, None) or (None, the RpcError), after asserting the error is a clear one."""
    try:
        return unary(channel, method, response_type)(
            msg, timeout=CALL_TIMEOUT_S, metadata=metadata
        ), None
    except grpc.RpcError as err:
        assert err.code() not in NEVER, f"{method}: {err.code()} {err.details()!r}"
        assert (err.details() or "").strip(), f"{method}: {err.code()} without a message"
        assert "internal error" not in err.details()
        return None, err


# -- ModelInfer: the answer over gRPC, and the same request over HTTP ------------------------


def grpc_outputs(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for entry, raw in zip(resp.outputs, resp.raw_output_contents, strict=True):
        if entry.datatype == "BYTES":
            array = deserialize_bytes_tensor(raw)
        else:
            array = np.frombuffer(raw, NUMPY_DTYPES[entry.datatype])
        out[entry.name] = array.reshape(tuple(entry.shape))
    return out


def input_array(msg: pb.ModelInferRequest, i: int) -> np.ndarray:
    """Input ``i``'s tensor as the protocol defines it (raw bytes, else typed contents)."""
    tensor = msg.inputs[i]
    dtype = NUMPY_DTYPES[tensor.datatype]
    if msg.raw_input_contents:
        flat = np.frombuffer(msg.raw_input_contents[i], dtype)
    else:
        flat = np.asarray(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]), dtype)
    return flat.reshape(tuple(tensor.shape))


def over_http(url: str, msg: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """The same request as a binary-tensor HTTP infer call: its outputs (200 asserted)."""
    arrays = [input_array(msg, i) for i in range(len(msg.inputs))]
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            "parameters": {"binary_data_size": a.nbytes},
        }
        for t, a in zip(msg.inputs, arrays, strict=True)
    ]
    header: dict = {"inputs": inputs}
    if msg.id:
        header["id"] = msg.id
    if msg.outputs:
        header["outputs"] = [
            {"name": o.name, "parameters": _http_params(o.parameters)} for o in msg.outputs
        ]
    head = orjson.dumps(header)
    version = f"/versions/{msg.model_version}" if msg.model_version else ""
    resp = httpx.post(
        f"{url}/v2/models/{msg.model_name}{version}/infer",
        content=head + b"".join(a.tobytes() for a in arrays),
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=CALL_TIMEOUT_S,
    )
    assert resp.status_code == 200, f"gRPC answered, HTTP {resp.status_code}: {resp.text}"
    length = int(resp.headers.get("inference-header-content-length", len(resp.content)))
    result = thttp.InferResult.from_response_body(resp.content, False, length)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def _http_params(params) -> dict:
    out: dict = {"binary_data": True}
    if "classification" in params:
        kind = params["classification"].WhichOneof("parameter_choice")
        out["classification"] = getattr(params["classification"], kind)
    return out


@given(case=infer_cases(), metadata=st.one_of(st.just(()), metadata_strategy()))
@FUZZ
def test_model_infer_answers_or_refuses_clearly(served, case, metadata):
    url, channel, failures = served
    msg, valid = case
    resp, err = call(channel, "ModelInfer", msg, pb.ModelInferResponse, metadata)
    event(f"valid={valid and not metadata} {err.code().name if err else 'OK'}")
    failures.assert_none()
    if valid and not metadata:
        assert err is None, f"a valid request refused: {err.code()} {err.details()}"
    if resp is None:
        return
    got = grpc_outputs(resp)
    assert resp.id == msg.id
    want = over_http(url, msg)
    assert list(got) == list(want)  # the same outputs, in the same order
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        assert np.array_equal(got[name], array, equal_nan=array.dtype.kind in "fc"), name


# -- the stream: one answer per request, in order, each an answer or its error --------------


@given(cases=st.lists(infer_cases(), min_size=1, max_size=4))
@fuzz_settings(OTHER_EXAMPLES // 3)
def test_model_stream_infer_answers_each_request_in_order(served, cases):
    _, channel, failures = served
    stream = channel.stream_stream(
        f"/{SERVICE}/ModelStreamInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    sent = [msg for msg, _ in cases]
    answers = list(stream(iter(sent), timeout=CALL_TIMEOUT_S))
    failures.assert_none()
    assert len(answers) == len(sent)
    for (msg, valid), answer in zip(cases, answers, strict=True):
        if answer.error_message:
            assert not valid, answer.error_message
            assert "internal error" not in answer.error_message
        else:
            assert answer.infer_response.id == msg.id


# -- the other RPCs: odd names and versions, garbage messages, odd metadata ------------------

BY_NAME = [
    ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
    ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    ("ModelConfig", pb.ModelConfigRequest, pb.ModelConfigResponse),
    ("ModelStatistics", pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
]
ANY_MESSAGE = [
    ("ServerLive", pb.ServerLiveResponse),
    ("ServerReady", pb.ServerReadyResponse),
    ("ServerMetadata", pb.ServerMetadataResponse),
    ("RepositoryIndex", pb.RepositoryIndexResponse),
    ("ModelInfer", pb.ModelInferResponse),
    *[(m, resp) for m, _, resp in BY_NAME],
]


def repository_index(channel) -> list:
    resp, err = call(
        channel, "RepositoryIndex", pb.RepositoryIndexRequest(), pb.RepositoryIndexResponse
    )
    assert err is None
    return sorted((m.name, m.version, m.state) for m in resp.models)


@given(
    rpc=st.sampled_from(BY_NAME),
    name=odd_names(),
    version=st.one_of(st.just(""), odd_names()),
    metadata=metadata_strategy(),
)
@fuzz_settings(OTHER_EXAMPLES)
@example(rpc=BY_NAME[3], name="", version="1", metadata=())  # every model's statistics
def test_model_rpcs_with_odd_names(served, rpc, name, version, metadata):
    _, channel, failures = served
    method, request_type, response_type = rpc
    resp, err = call(
        channel, method, request_type(name=name, version=version), response_type, metadata
    )
    failures.assert_none()
    if method == "ModelReady":  # (as Triton: a model or version it does not serve, NOT_FOUND)
        integral = version.isascii() and version.isdigit() and len(version) < 19
        if name in ("mlp", "every") and (version == "" or integral and int(version) == 1):
            assert err is None and resp.ready
        elif version == "" or integral:
            assert err.code() == grpc.StatusCode.NOT_FOUND
        else:  # (Triton's GetModelVersionFromString: not an integer > 0 is INVALID_ARG)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@given(name=odd_names(), load=st.booleans(), params=st.lists(st.text(max_size=12), max_size=3))
@fuzz_settings(OTHER_EXAMPLES)
@example(name="", load=True, params=[])
@example(name="../every", load=True, params=[])
def test_repository_rpcs_with_odd_names_change_nothing(served, name, load, params):
    _, channel, failures = served
    before = repository_index(channel)
    if load:
        msg = pb.RepositoryModelLoadRequest(model_name=name)
        for p in params:
            msg.parameters[p].string_param = "x"
        call(channel, "RepositoryModelLoad", msg, pb.RepositoryModelLoadResponse)
    elif name not in ("mlp", "every"):  # (unloading a served model is not a mistake)
        _, err = call(
            channel,
            "RepositoryModelUnload",
            pb.RepositoryModelUnloadRequest(model_name=name),
            pb.RepositoryModelUnloadResponse,
        )
        assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
    failures.assert_none()
    assert repository_index(channel) == before


@given(rpc=st.sampled_from(ANY_MESSAGE), data=st.binary(max_size=64), metadata=metadata_strategy())
@fuzz_settings(OTHER_EXAMPLES)
@example(rpc=ANY_MESSAGE[0], data=b"\xff\xff\xff\xff", metadata=())
def test_any_rpc_with_garbage_bytes_and_metadata(served, rpc, data, metadata):
    _, channel, failures = served
    method, response_type = rpc
    call(channel, method, data, response_type, metadata)
    failures.assert_none()


NOT_SERVED = ["TraceSetting", "LogSettings", "SystemSharedMemoryStatus", "CudaSharedMemoryRegister"]


@given(
    method=st.one_of(st.sampled_from(NOT_SERVED), st.from_regex(r"[A-Za-z]{1,20}", fullmatch=True))
)
@fuzz_settings(OTHER_EXAMPLES // 3)
def test_a_method_not_served_is_unimplemented(served, method):
    _, channel, failures = served
    served_methods = {m for m, _ in ANY_MESSAGE} | {"ModelStreamInfer", "RepositoryModelLoad"}
    assume(method not in served_methods | {"RepositoryModelUnload"})
    _, err = call(channel, method, b"", pb.ServerLiveResponse)
    assert err is not None and err.code() == grpc.StatusCode.UNIMPLEMENTED
    failures.assert_none()


# -- what the fuzz found, kept as plain cases -------------------------------------------------


def every_typed(name: str, value: int) -> pb.ModelInferRequest:
    """A request for the every-datatype program with its data as typed contents, ``name``'s
    first value replaced by ``value`` (FP16, which has no typed field, goes in fp32_contents)."""
    msg = pb.ModelInferRequest(model_name="every")
    for (input_name, datatype, _), array in zip(TYPES, sample(1, 0), strict=True):
        tensor = msg.inputs.add(name=input_name, datatype=datatype, shape=array.shape)
        values = array.ravel().tolist()
        if input_name == name:
            values[0] = value
        getattr(tensor.contents, CONTENTS_FIELD.get(datatype, "fp32_contents")).extend(values)
    return msg


@pytest.mark.parametrize(
    "name, value", [("i8", 1000), ("i8", -129), ("i16", 40_000), ("u8", 256), ("u16", 2**32 - 1)]
)
def test_typed_contents_out_of_range_for_a_narrow_type_is_invalid_argument(served, name, value):
    """(int_contents carries INT8 and INT16 as int32: 1000 for an INT8 was an INTERNAL error)"""
    _, channel, failures = served
    _, err = call(channel, "ModelInfer", every_typed(name, value), pb.ModelInferResponse)
    failures.assert_none()
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"input {name!r}" in err.details() and "out of range" in err.details()


# -- a gateway with tenants: odd credentials, a tenant's model list, its rate limit ---------

KEY_A, KEY_B, KEY_C = "key-a", "key-b", "key-c"
GOOD = [("x-api-key", KEY_A), ("authorization", "Bearer " + KEY_A), ("x-api-key", KEY_B)]
GOOD += [("authorization", "bearer  " + KEY_B), ("x-api-key", KEY_C)]
ODD_CREDENTIALS = st.lists(
    st.tuples(
        st.sampled_from(["authorization", "x-api-key"]),
        st.one_of(
            st.sampled_from(
                [KEY_A, "Bearer", "Bearer x", KEY_A.upper(), KEY_A + " x", "Basic a2V5"]
            ),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16),
        ),
    ),
    max_size=2,
    unique_by=lambda kv: kv[0],
).map(tuple)
GOOD_CREDENTIALS = st.sampled_from(GOOD).map(lambda kv: (kv,))
CREDENTIALS = st.one_of(GOOD_CREDENTIALS, GOOD_CREDENTIALS, ODD_CREDENTIALS)
ROUTE = st.one_of(
    st.just(()), st.sampled_from([(("x-tidegate-route", "vm"),), (("x-tidegate-workers", "2"),)])
)


@pytest.fixture(scope="module")
def with_tenants(replica):
    """a: a bucket of three requests refilled once in 1,000 s; b: the every-datatype program
    only; c: may choose the route."""
    tenants = [
        {"name": "a", "api_keys": [KEY_A], "rate_per_s": 0.001, "burst": 3},
        {"name": "b", "api_keys": [KEY_B], "models": ["every"]},
        {"name": "c", "api_keys": [KEY_C], "allow_route_override": True},
    ]
    with gateway(replica, "tenants", tenants=tenants) as served:
        yield served


@given(case=infer_cases(), credentials=CREDENTIALS, route=ROUTE)
@fuzz_settings(OTHER_EXAMPLES)
def test_model_infer_with_odd_credentials_on_a_gateway_with_tenants(
    with_tenants, case, credentials, route
):
    _, channel, failures = with_tenants
    msg, _ = case
    _, err = call(channel, "ModelInfer", msg, pb.ModelInferResponse, (*credentials, *route))
    failures.assert_none()
    event(f"{err.code().name if err else 'OK'}")
    if err is None:
        return
    if not credentials:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    if err.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        assert int(dict(err.trailing_metadata())["retry-after"]) >= 1  # when to retry
