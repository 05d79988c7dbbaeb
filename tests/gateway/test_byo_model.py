"""Bring your own model: a user's torch.export program with two inputs of different datatypes,
imported with `tidegate export`, served by a gateway that boots its own replica, on both paths."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

from gateway.app import create_app
from gateway.settings import Settings
from ops.cli import main as cli

from .conftest import serve_app

pytestmark = pytest.mark.slow


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.embed = torch.nn.Embedding(16, 8)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, image, token):
        a = torch.relu(self.conv(image)).mean(dim=(2, 3))
        b = self.embed(token).sum(dim=1)
        return self.head(torch.cat([a, b], dim=1)), token.sum(dim=1)


def test_user_program_on_vm_and_burst(tmp_path):
    torch.manual_seed(3)
    module = TwoInputs().eval()
    batch = torch.export.Dim("batch", min=1, max=8)
    image, token = torch.randn(2, 3, 20, 20), torch.randint(0, 16, (2, 4))
    program = torch.export.export(module, (image, token), dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path / "two.pt2"
    torch.export.save(program, str(path))
    repo = tmp_path / "repo"
    assert cli(["export", str(path), "--name", "two", "--out", str(repo)]) == 0

    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        repo=repo,
        vm={"replicas": 1, "threads": 1},
        burst={"enabled": True, "max_workers": 4, "concurrency": 8},
    )
    x = np.random.default_rng(0).standard_normal((3, 3, 20, 20)).astype(np.float32)
    t = np.random.default_rng(1).integers(0, 16, (3, 4)).astype(np.int64)
    with torch.inference_mode():
        want, want_sum = (v.numpy() for v in module(torch.from_numpy(x), torch.from_numpy(t)))
    with serve_app(create_app(settings)) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
        # ready (honestly) once the VM replica is up and the default burst plans are prepared
        deadline = time.monotonic() + 180
        while not client.is_server_ready():
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.2)
        assert client.is_model_ready("two")
        assert 'tidegate_vm_replicas{state="ready"} 1.0' in httpx.get(url + "/metrics").text
        meta = client.get_model_metadata("two")
        assert [(i["datatype"], i["shape"]) for i in meta["inputs"]] == [
            ("FP32", [-1, 3, 20, 20]),
            ("INT64", [-1, 4]),
        ]
        for route in ("vm", "burst"):
            a = triton.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
            a.set_data_from_numpy(x)
            b = triton.InferInput(meta["inputs"][1]["name"], list(t.shape), "INT64")
            b.set_data_from_numpy(t, binary_data=False)
            result = client.infer(
                "two", [a, b], headers={"X-Tidegate-Route": route, "X-Tidegate-Workers": "2"}
            )
            names = [o["name"] for o in meta["outputs"]]
            assert np.abs(result.as_numpy(names[0]) - want).max() <= 1e-5, route
            assert (result.as_numpy(names[1]) == want_sum).all(), route


class Totals(torch.nn.Module):
    def forward(self, x):
        return x * 2, x.sum()


def test_an_output_without_the_batch_dimension_is_refused_at_import(tmp_path, capsys):
    """It was imported, then every request failed (the server hands each request its rows)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(Totals(), (torch.ones(2, 3),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "totals.pt2"))
    code = cli(["export", str(tmp_path / "totals.pt2"), "--name", "totals", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "output__1" in err and "batch dimension" in err
    assert "Traceback" not in err and not (tmp_path / "totals").exists()
