"""The model server's load-time rewrites: same answers as the exported program, or no rewrite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.graph_opt import ExactOnNonFinite, optimize


def _exported(module: nn.Module, sample: torch.Tensor):
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(module.eval(), (sample,), dynamic_shapes=({0: batch},))
    return program.module()


def _relative_error(want: torch.Tensor, got: torch.Tensor) -> float:
    return float((want - got).abs().max()) / max(float(want.abs().max()), 1.0)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    repo = tmp_path_factory.mktemp("opt-repo")
    export_zoo("resnet18", repo, size=(64, 64))
    return load_artifact(repo, "resnet18").load_module()


def test_resnet18_runs_folded_in_onednn_layout_with_the_exported_answers(resnet18):
    served, what = optimize(resnet18, (torch.randn(1, 3, 64, 64),))
    assert what == "20 batch norms folded, 20 convs in oneDNN layout"
    assert not any("batch_norm" in str(n.target) for n in served.graph.nodes)
    with torch.inference_mode():
        for rows in (1, 5):  # the batch dimension stays dynamic
            x = torch.randn(rows, 3, 64, 64)
            want, got = resnet18(x), served(x)
            assert got.shape == want.shape and got.layout == torch.strided
            assert _relative_error(want, got) <= 1e-5
    assert served is not resnet18 and any(
        "batch_norm" in str(n.target) for n in resnet18.graph.nodes
    )


class _Hardtanh(nn.Module):
    """MobileNet's shape: a conv trunk with ReLU6, which has no oneDNN-layout kernel."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.b(nn.functional.relu6(self.bn(self.a(x))))


def test_a_trunk_that_would_leave_the_layout_midway_is_only_folded():
    torch.manual_seed(0)
    module = _Hardtanh()
    module.bn.running_mean.uniform_(-1, 1)
    module.bn.running_var.uniform_(0.5, 2)
    exported = _exported(module, torch.randn(2, 3, 12, 12))
    served, what = optimize(exported, (torch.randn(1, 3, 12, 12),))
    assert what == "1 batch norms folded, 0 convs in oneDNN layout"
    x = torch.randn(3, 3, 12, 12)
    with torch.inference_mode():
        assert _relative_error(exported(x), served(x)) <= 1e-5


class _OddPool(nn.Module):
    """A 4x4 map pooled to 3x3: the oneDNN layout has no kernel for that; the check finds out."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 3).flatten(1)


def test_a_rewrite_that_fails_its_check_serves_the_program_as_exported():
    exported = _exported(_OddPool(), torch.randn(2, 3, 4, 4))
    served, what = optimize(exported, (torch.randn(1, 3, 4, 4),))
    assert (served, what) == (exported, "as exported")


def test_a_model_without_convs_is_left_alone():
    exported = _exported(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.randn(2, 4))
    assert optimize(exported, (torch.randn(1, 4),)) == (exported, "as exported")


def test_a_nan_input_is_answered_as_the_exported_program_answers_it(resnet18):
    """oneDNN's ReLU maps NaN to 0: the rewritten resnet alone answers finite numbers to a NaN
    pixel (the burst path, which runs the program as exported, answers NaN); the guard sends a
    batch with a NaN or an infinity to the exported module, loaded once on the first one."""
    served, _ = optimize(resnet18, (torch.randn(1, 3, 64, 64),))
    loads = []
    guarded = ExactOnNonFinite(served, lambda: loads.append(1) or resnet18)
    guarded.validate_inputs = False
    x = torch.full((2, 3, 64, 64), 0.5)
    x[0, 1, 7, 9] = float("nan")
    x[1, 0, 3, 3] = float("inf")
    with torch.inference_mode():
        want, alone = resnet18(x), served(x)
        assert want.isnan().all() and not alone.isnan().any()  # what users got before
        got = guarded(x)
        assert got.isnan().all() and loads == [1]
        finite = torch.randn(3, 3, 64, 64)
        assert _relative_error(resnet18(finite), guarded(finite)) <= 1e-5
        guarded(x)
    assert loads == [1] and resnet18.validate_inputs is False


def test_the_guard_answers_with_the_rewrite_when_the_exported_program_is_gone(resnet18):
    served, _ = optimize(resnet18, (torch.randn(1, 3, 64, 64),))
    x = torch.full((1, 3, 64, 64), float("nan"))
    with torch.inference_mode():
        assert ExactOnNonFinite(served, lambda: None)(x).shape == (1, 1000)


def test_the_model_server_answers_a_nan_pixel_with_nan(tmp_path):
    """Through the served path (decode, batcher, encode): a JSON request with one NaN pixel is
    answered null (NaN) everywhere, as the exported program computes; finite rows stay exact."""
    import asyncio

    import orjson

    from vmpool.dataplane import ModelServer

    export_zoo("resnet18", tmp_path, size=(32, 32))
    server = ModelServer(tmp_path, ["resnet18"])
    try:
        model = server.model("resnet18")
        assert isinstance(model.batcher._module, ExactOnNonFinite)  # the rewrite is served
        pixels = ["NaN"] + ["0.5"] * (3 * 32 * 32 - 1)
        body = (
            '{"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", '
            f'"data": [{", ".join(pixels)}]}}]}}'
        ).encode()
        answer = asyncio.run(server.infer(model, body, None))
        data = orjson.loads(answer.body)["outputs"][0]["data"]
        assert len(data) == 1000 and all(v is None for v in data)
    finally:
        server.close()
