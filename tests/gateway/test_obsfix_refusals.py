"""Every kind of refusal, over HTTP and gRPC, is counted exactly once in
``tidegate_requests_total`` with its code and the labels the other answers use (one table, one
test): the rate limiter (429), auth (401, 403), an unknown model (404), a body too large (413),
an overload (the body budget full while a slow client holds it: 503), a replica that does not
answer in time (504), and gRPC's statuses. The gateway's replica sits behind a loopback proxy
that holds infer POSTs when told to, so the 504s do not depend on timing. Each count is read
once the gateway has nothing in flight (a call whose client gave up is still dispatched: it
must not be counted again when that ends)."""

from __future__ import annotations

from typing import Callable

import socket
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.fault_proxy import FaultProxy

from .conftest import serve_app

TENANTS = [
    {"name": "acme", "api_keys": ["ka"], "models": ["mlp"]},
    {"name": "open", "api_keys": ["ko"]},
    {"name": "slow", "api_keys": ["ks"], "rate_per_s": 0.001, "burst": 1},
    {"name": "grpcslow", "api_keys": ["kg"], "rate_per_s": 0.001, "burst": 1},
]
REPLICA_TIMEOUT_S = 1.0


class Gateway:
    def __init__(self, url: str, grpc_target: str, replica: FaultProxy):
        self.url, self.grpc_target, self.replica = url, grpc_target, replica
        self.http = httpx.Client(base_url=url, timeout=60)
        self.budget = None  # the gateway's BodyBudget

    def post(self, key: str | None, model: str = "mlp", rows: int = 1) -> httpx.Response:
        headers = {"x-api-key": key} if key else {}
        return self.http.post(f"/v2/models/{model}/infer", json=_body(rows), headers=headers)

    def grpc_ok(self, key: str) -> str:
        inp = tgrpc.InferInput("input", [1, 784], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 784), np.float32))
        client = tgrpc.InferenceServerClient(self.grpc_target)
        client.infer("mlp", [inp], headers={"x-api-key": key})
        return "OK"

    def grpc(self, key: str | None, model: str = "mlp", shape=(1, 784), timeout_s=None) -> str:
        inp = tgrpc.InferInput("input", list(shape), "FP32")
        inp.set_data_from_numpy(np.zeros(shape, np.float32))
        client = tgrpc.InferenceServerClient(self.grpc_target)
        headers = {"x-api-key": key} if key else {}
        with pytest.raises(InferenceServerException) as err:
            client.infer(model, [inp], headers=headers, client_timeout=timeout_s)
        return err.value.status()


def _body(rows: int) -> dict:
    data = [0.0] * (rows * 784)
    return {"inputs": [{"name": "input", "shape": [rows, 784], "datatype": "FP32", "data": data}]}


@pytest.fixture(scope="module")
def gateway(model_server, small_repo, tmp_path_factory):
    replica = FaultProxy(model_server).start()
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("obsfix-refusals"),
        repo=small_repo,
        grpc_port=0,
        vm={
            "provisioner": "static",
            "urls": [replica.endpoint],
            "request_timeout_s": REPLICA_TIMEOUT_S,
        },
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=TENANTS,
        max_body_mb=1.0,  # 413 past it
        max_inflight_body_mb=0.08,  # 83,886 bytes: one 60 KB body fits, two do not
    )
    app = create_app(settings)
    try:
        with serve_app(app) as url:
            gw = Gateway(url, f"127.0.0.1:{app.state.gateway.grpc.port}", replica)
            gw.budget = app.state.gateway.body_budget
            yield gw
            gw.http.close()
    finally:
        replica.stop()


def _counts(gw: Gateway) -> tuple[dict[tuple[str, str, str, str], float], float]:
    """``tidegate_requests_total`` by (code, tenant, model, path), as Prometheus parses it, and
    ``tidegate_requests_in_flight``."""
    out: dict[tuple[str, str, str, str], float] = {}
    in_flight = 0.0
    for family in text_string_to_metric_families(gw.http.get("/metrics").text):
        for s in family.samples:
            if s.name == "tidegate_requests_total":
                key = (s.labels["code"], s.labels["tenant"], s.labels["model"], s.labels["path"])
                out[key] = s.value
            elif s.name == "tidegate_requests_in_flight":
                in_flight = s.value
    return out, in_flight


def _overload(gw: Gateway) -> httpx.Response:
    """A 60 KB body while a slow client holds 60 KB of the 82 KB budget (it sent all but its
    last byte), then the slow client goes (its request ends 499: counted too)."""
    host, port = gw.url.removeprefix("http://").split(":")
    head = (
        "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\nx-api-key: ko\r\n"
        "Content-Length: 60000\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as hog:
        hog.sendall(head.encode() + b"\0" * 59_999)
        _wait(lambda: gw.budget.in_flight_bytes >= 59_999, "the slow body was not taken")
        return gw.http.post(
            "/v2/models/mlp/infer",
            content=b"\0" * 60_000,
            headers={"x-api-key": "ko", "content-type": "application/octet-stream"},
        )


def _wait(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s  # bounds a broken gateway only
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _timeout(gw: Gateway) -> httpx.Response:
    gw.replica.hold_after(0)  # infer POSTs held from now on (the last cases: never released)
    return gw.post("ko")


def _grpc_timeout(gw: Gateway) -> str:
    gw.replica.hold_after(0)
    return gw.grpc("ko", timeout_s=REPLICA_TIMEOUT_S / 2)


# name: (what is sent, the status it gets, each (code, tenant, model, path) counted once);
# the held replica's cases come last (infer POSTs stay held from then on)
CASES: dict[str, tuple] = {
    "answered": (lambda gw: gw.post("ko"), 200, ("200", "open", "mlp", "vm")),
    "no key": (lambda gw: gw.post(None), 401, ("401", "unknown", "mlp", "none")),
    "unknown key": (lambda gw: gw.post("nope"), 401, ("401", "unknown", "mlp", "none")),
    "model not allowed": (
        lambda gw: gw.post("ka", "resnet18"),
        403,
        ("403", "acme", "resnet18", "none"),
    ),
    "unknown model": (lambda gw: gw.post("ko", "nope"), 404, ("404", "open", "unknown", "none")),
    "body too large": (lambda gw: gw.post("ko", rows=400), 413, ("413", "open", "mlp", "none")),
    "overload": (_overload, 503, ("503", "open", "mlp", "none"), ("499", "open", "mlp", "none")),
    "rate limited": (  # (its one token spent first)
        lambda gw: gw.post("ks").status_code == 200 and gw.post("ks"),
        429,
        ("200", "slow", "mlp", "vm"),
        ("429", "slow", "mlp", "none"),
    ),
    "grpc no key": (lambda gw: gw.grpc(None), "UNAUTHENTICATED", ("401", "unknown", "mlp", "none")),
    "grpc model not allowed": (
        lambda gw: gw.grpc("ka", "resnet18", (1, 3, 64, 64)),
        "PERMISSION_DENIED",
        ("403", "acme", "resnet18", "none"),
    ),
    "grpc unknown model": (
        lambda gw: gw.grpc("ko", "nope"),
        "NOT_FOUND",
        ("404", "open", "unknown", "none"),
    ),
    "grpc bad tensor": (
        lambda gw: gw.grpc("ko", shape=(1, 5)),
        "INVALID_ARGUMENT",
        ("400", "open", "mlp", "none"),
    ),
    "grpc rate limited": (
        lambda gw: gw.grpc_ok("kg") and gw.grpc("kg"),
        "RESOURCE_EXHAUSTED",
        ("200", "grpcslow", "mlp", "vm"),
        ("429", "grpcslow", "mlp", "none"),
    ),
    "replica timeout": (_timeout, 504, ("504", "open", "mlp", "vm")),
    "grpc deadline": (_grpc_timeout, "DEADLINE_EXCEEDED", ("504", "open", "mlp", "vm")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_refusal_is_counted_once_with_its_code(gateway, case):
    send, status, *counted = case
    before, _ = _counts(gateway)
    got = send(gateway)
    got = got.status_code if isinstance(got, httpx.Response) else got
    assert got == status or got == f"StatusCode.{status}", (got, status)
    changed: dict = {}

    def settled() -> bool:  # every answer counted, nothing still dispatched
        after, in_flight = _counts(gateway)
        changed.clear()
        changed.update({k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)})
        return in_flight == 0 and sum(changed.values()) >= len(counted)

    _wait(settled, f"not counted: {counted}")
    assert changed == dict.fromkeys(counted, 1.0), changed
