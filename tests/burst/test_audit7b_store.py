"""The burst path's object store end to end through a gateway (issue 7's audit, s13): S3 on a
loopback moto server behind a proxy that can take it away, and the directory store. Split plans
move their tensors through the store; answers equal the VM path's; each request's objects are
gone after it; a store that fails while a plan is prepared or a request runs is a 503 with
``{"error": ...}`` (a plan's preparation once answered 500 "internal error: StoreError"), and the
gateway serves again once the store is back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest

from burst.planning import REFERENCE_PROFILE
from burst.weight_retention import INDEX_PREFIX
from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.conftest import running_model_server, send_routed, serve_app
from tests.support.fault_proxy import FaultProxy
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, moto_server
from vmpool.codec import decode_response
from vmpool.export import export_zoo

pytestmark = pytest.mark.slow


class StoreSwitch(FaultProxy):
    """The S3 server behind a switch: while ``down`` (or from the first request whose path
    holds ``trip_on``), every request is answered 503."""

    down = False
    trip_on: str | None = None

    def _next_fault(self, method: str, path: str, body: bytes):
        fault = super()._next_fault(method, path, body)
        if self.trip_on and self.trip_on in path:
            self.down, self.trip_on = True, None
        return ("status", 503) if self.down else fault


def split_paying_profile() -> dict:
    """The reference profile with compute 50x slower and S3 as fast as a local directory:
    the planner splits ResNet-18 at 64x64 over the S3 store."""
    raw = json.loads(REFERENCE_PROFILE.read_text())
    raw["compute"]["ms_per_gmac"] = {k: v * 50 for k, v in raw["compute"]["ms_per_gmac"].items()}
    kinds = raw["compute"].get("kinds", {})  # the bytes-aware fit too (policies/compute_fit.py)
    raw["compute"]["kinds"] = {k: {t: v * 50 for t, v in f.items()} for k, f in kinds.items()}
    raw["models"] = {}
    raw["transfer"]["s3"] = dict(raw["transfer"]["dir"])
    return raw


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("a7b-repo")
    export_zoo("resnet18", root, size=(64, 64), max_batch_size=4)
    (root / "resnet18" / "profile.json").write_text(json.dumps(split_paying_profile()))
    return root


@pytest.fixture(scope="module")
def vm(repo, tmp_path_factory):
    with running_model_server(repo, tmp_path_factory.mktemp("a7b-ms") / "ms.log") as url:
        yield url


@pytest.fixture(scope="module")
def s3():
    """(switchable proxy, boto3 client, bucket) over a moto server of this module's own."""
    with moto_server() as (endpoint, _):
        proxy = StoreSwitch(endpoint).start()
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
        )
        client.create_bucket(Bucket="tidegate-a7b")
        try:
            yield proxy, client, "tidegate-a7b"
        finally:
            proxy.stop()


def post(url: str, x: np.ndarray, route: str, workers: int = 2):
    """(status, output tensor or error JSON, headers) of one binary infer POST."""
    resp = send_routed(url, x, route, workers)
    if resp.status_code != 200:
        return resp.status_code, resp.json(), resp.headers
    length = int(resp.headers["inference-header-content-length"])
    return 200, decode_response(resp.content, length).outputs["output"], resp.headers


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5 * max(1.0, np.abs(b).max())


def gateway_settings(repo: Path, vm: str, data: Path, store: dict) -> Settings:
    return Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [vm]},
        burst={"enabled": True, "store": store, "transport": "store", "concurrency": 10},
    )


def _tensor_keys(client, bucket: str) -> list[str]:
    """Objects in the bucket other than prepared plans and their versions' index: a request's
    tensors."""
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    kept = ("plans/", INDEX_PREFIX)
    return [o["Key"] for o in listed if not o["Key"].startswith(kept)]


def test_s3_split_plans_equal_the_vm_path_clean_up_and_a_store_that_fails_is_a_503(
    repo, vm, s3, tmp_path
):
    proxy, client, bucket = s3
    store = {
        "kind": "s3",
        "bucket": bucket,
        "endpoint_url": proxy.endpoint,
        "region": S3_TEST_REGION,
        **S3_TEST_CREDENTIALS,
    }
    x = np.random.default_rng(7).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with serve_app(create_app(gateway_settings(repo, vm, tmp_path, store))) as url:
        _, expected, _ = post(url, x, "vm")
        used = set()
        for workers in (1, 2, 4):
            status, got, headers = post(url, x, "burst", workers)
            assert status == 200 and same(got, expected), (workers, got)
            used.add(int(headers["x-tidegate-workers"]))
            assert _tensor_keys(client, bucket) == []  # the request's objects went with it
        assert max(used) >= 2  # legs' tensors went through S3
        puts = sum(1 for m, p, _ in proxy.seen if m == "PUT" and "/req/" in p)
        assert puts > 0  # not inline: the store carried the split's tensors

        proxy.trip_on = "/req/"  # S3 fails from the first tensor a request puts there
        status, error, headers = post(url, x, "burst", 2)
        assert status == 503 and error["error"], error
        # a plan not prepared yet, while S3 is down: once 500 "internal error: StoreError"
        status, error, headers = post(url, x, "burst", 3)
        assert status == 503 and "store" in error["error"], error
        assert headers.get("retry-after")

        proxy.down = False
        for workers in (2, 3):
            status, got, _ = post(url, x, "burst", workers)
            assert status == 200 and same(got, expected), (workers, got)
        assert _tensor_keys(client, bucket) == []


@pytest.mark.parametrize("victim", ["objects", "tensors"])
def test_a_directory_store_that_goes_away_is_a_503_and_serving_resumes(repo, vm, tmp_path, victim):
    """The plans' directory (data_dir/objects) or the tensors' (/dev/shm) replaced by a file:
    a new plan once answered 500 (FileExistsError from the store's mkdir)."""
    data = tmp_path / "data"
    store = {"kind": "dir", "root": str(data / "objects")}
    x = np.random.default_rng(8).standard_normal((1, 3, 64, 64)).astype(np.float32)
    app = create_app(gateway_settings(repo, vm, data, store))
    with serve_app(app) as url:
        _, expected, _ = post(url, x, "vm")
        status, got, _ = post(url, x, "burst", 2)
        assert status == 200 and same(got, expected)
        service = app.state.gateway.burst
        gone = Path(service.store_cfg["root"] if victim == "objects" else service._tensor_root)
        shutil.rmtree(gone)
        gone.write_text("not a directory")
        status, error, headers = post(url, x, "burst", 3)  # a plan to prepare
        assert status == 503 and error["error"] and headers.get("retry-after"), error
        gone.unlink()
        gone.mkdir()
        for workers in (2, 3):
            status, got, _ = post(url, x, "burst", workers)
            assert status == 200 and same(got, expected), (workers, got)
