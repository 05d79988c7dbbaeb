"""A model exported with a bounded dynamic size past the batch (a sequence length,
``torch.export.Dim(min=4, max=64)``): a request outside the bounds is a 400 that says which
input, dimension and limit, not a 500 from inside the graph ("Guard failed: x.size()[1] >= 4")."""

from __future__ import annotations

import httpx
import pytest
import torch
from torch import nn

from ops.cli import main as tidegate_main
from tests.vmpool.test_server import ServerProcess


class _Text(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(100, 8), nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(dim=1))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=4, max=64)
    ids = torch.randint(0, 100, (2, 10))
    program = torch.export.export(_Text(), (ids,), dynamic_shapes=({0: batch, 1: seq},))
    torch.export.save(program, str(root / "text.pt2"))
    repo = root / "models"
    assert (
        tidegate_main(["export", str(root / "text.pt2"), "--name", "text", "--out", str(repo)]) == 0
    )
    proc = ServerProcess(repo)
    yield proc
    proc.stop()


def _infer(server, length: int) -> httpx.Response:
    body = {
        "inputs": [{"name": "ids", "datatype": "INT64", "shape": [1, length], "data": [1] * length}]
    }
    return httpx.post(f"{server.url}/v2/models/text/infer", json=body, timeout=120)


def test_a_size_outside_the_exported_range_is_a_400_and_inside_it_answers(server):
    short, long = _infer(server, 2), _infer(server, 100)
    assert short.status_code == 400, short.text
    assert "dimension 1 is 2" in short.json()["error"] and "at least 4" in short.json()["error"]
    assert long.status_code == 400 and "at most 64" in long.json()["error"]
    for length in (4, 20, 64):
        ok = _infer(server, length)
        assert ok.status_code == 200, ok.text
        assert ok.json()["outputs"][0]["shape"] == [1, 3]
