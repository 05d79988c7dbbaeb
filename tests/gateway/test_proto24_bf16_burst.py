"""BF16 on the burst path: a model taking and giving bfloat16 answers the same bits there as on
the VM path and as torch in-process. The burst path hands tensors to its master function with
its own codec (burst/tensors.py); before, numpy's bfloat16 arrays could not become tensors
there (``torch.from_numpy`` knows no bfloat16) and the request failed."""

from __future__ import annotations

import httpx
import ml_dtypes
import numpy as np
import pytest
import torch

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.codec import decode_response, encode_request
from vmpool.export import export_module

from .conftest import running_model_server, serve_app

pytestmark = pytest.mark.slow


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(24)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        y = torch.relu(self.conv(x.float()))
        return self.fc(y.flatten(1)).to(torch.bfloat16)


def post(url: str, x: np.ndarray, route: str) -> np.ndarray:
    body, length = encode_request({"input": x})
    resp = httpx.post(
        f"{url}/v2/models/cnn/infer",
        content=body,
        timeout=300,
        headers={
            "Inference-Header-Content-Length": str(length),
            "X-Tidegate-Route": route,
            "X-Tidegate-Workers": "2",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tidegate-path"] == route
    answer = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
    return answer.outputs["output"]


def test_bf16_in_and_out_on_the_burst_path_equals_the_vm_path_and_torch(tmp_path):
    model = SmallCNN().eval()
    repo = tmp_path / "repo"
    export_module(model, (torch.zeros(2, 3, 8, 8, dtype=torch.bfloat16),), name="cnn", repo=repo)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(ml_dtypes.bfloat16)
    with torch.inference_mode():
        want = model(torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16))
    want = want.view(torch.uint16).numpy()
    with running_model_server(repo, tmp_path / "ms.log") as replica:
        settings = Settings.load(
            None,
            data_dir=tmp_path / "data",
            repo=repo,
            vm={"provisioner": "static", "urls": [replica]},
            burst={"enabled": True, "memory_mb": 1024, "concurrency": 4},
        )
        with serve_app(create_app(settings)) as url:
            answers = {route: post(url, x, route) for route in ("vm", "burst")}
    for route, got in answers.items():
        assert got.dtype == ml_dtypes.bfloat16 and got.shape == (2, 4), route
        assert np.array_equal(got.view(np.uint16), want), route
