"""Token ids outside the embedding table they index are a 400 naming the input and the range
(session 21's models audit), not a 503 from inside the model: a text encoder (vocabulary 50)
sent id 100 or -1 answered 503 "model textmask failed: IndexError: index out of range in
self", which reads as "retry"."""

from __future__ import annotations

import httpx
import pytest
import torch
from torch import nn

from ops.cli import main as tidegate_main
from tests.vmpool.test_server import ServerProcess


class _Tagger(nn.Module):
    """ids [B, L] (vocabulary 50) and a mask; the mask is no index, so any value goes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(50, 8), nn.Linear(8, 3)

    def forward(self, ids, mask):
        return self.head(self.embed(ids).mean(dim=1)) * mask.sum(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    batch = torch.export.Dim("batch", min=1, max=8)
    xs = (torch.randint(0, 50, (2, 6)), torch.ones(2, 6, dtype=torch.int64))
    program = torch.export.export(_Tagger(), xs, dynamic_shapes=({0: batch}, {0: batch}))
    torch.export.save(program, str(root / "tagger.pt2"))
    repo = root / "models"
    assert (
        tidegate_main(["export", str(root / "tagger.pt2"), "--name", "tagger", "--out", str(repo)])
        == 0
    )
    proc = ServerProcess(repo)
    yield proc
    proc.stop()


def _infer(server, ids: list[int], mask: list[int]) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [1, 6], "data": ids},
            {"name": "mask", "datatype": "INT64", "shape": [1, 6], "data": mask},
        ]
    }
    return httpx.post(f"{server.url}/v2/models/tagger/infer", json=body, timeout=120)


def test_ids_outside_the_vocabulary_are_a_400_and_inside_it_answer(server):
    for bad in (50, 100, -1):
        r = _infer(server, [1, 2, bad, 3, 4, 5], [1] * 6)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(f"input 'ids': value {bad} is outside 0..49"), r.text
    for ids, mask in (([0, 49, 7, 7, 7, 7], [1] * 6), ([1] * 6, [9, -3, 0, 0, 0, 1000])):
        r = _infer(server, ids, mask)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 3], r.text
