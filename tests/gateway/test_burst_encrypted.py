"""The burst path with tensors sealed in S3 (moto on loopback), through real function processes:
the per-request key goes gateway -> master -> workers in the payloads and the answer is exact."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION
from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)

from .conftest import post_routed, serve_app

pytestmark = pytest.mark.slow


def test_burst_through_sealed_s3_equals_the_vm_path(
    model_server,
    small_repo,
    tmp_path,
    s3_endpoint,  # noqa: F811
    s3_bucket,  # noqa: F811
):
    store = {
        "kind": "s3",
        "bucket": s3_bucket,
        "endpoint_url": s3_endpoint,
        "region": S3_TEST_REGION,
        **S3_TEST_CREDENTIALS,
    }  # encrypt: on by default for s3
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": True, "store": store, "transport": "store", "concurrency": 8},
    )
    x = np.random.default_rng(8).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with serve_app(create_app(settings)) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)

        def infer(headers):
            inp = triton.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = client.infer("resnet18", [inp], headers=headers)
            return result.as_numpy("output")

        vm = infer({"X-Tidegate-Route": "vm"})
        burst = post_routed(url, x, "burst")
    assert np.abs(burst - vm).max() <= 1e-5 * max(1.0, np.abs(vm).max())
    for log in (tmp_path / "logs").glob("*.log"):
        assert "tensor_key" not in log.read_text(errors="replace"), log
