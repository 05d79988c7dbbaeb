"""A small model repository for the vmpool tests, exported once per session."""

from __future__ import annotations

import pytest
import torch

from vmpool.artifact import ModelConfig, TensorSpec, write_artifact

torch.set_num_threads(1)


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )

    def forward(self, x):
        return self.net(x)


class Pair(torch.nn.Module):
    """Two inputs of different datatypes, two outputs of different datatypes."""

    def forward(self, a, b):
        return a.sum(dim=1) + b.to(torch.float32), torch.argmax(b, dim=1)


class Embed(torch.nn.Module):
    """Fails at run time on an out-of-range id: a model error the codec cannot foresee."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Embedding(5, 3)

    def forward(self, ids):
        return self.table(ids)


def _export(module, args, n_inputs):
    batch = torch.export.Dim("batch", max=64)
    shapes = tuple({0: batch} for _ in range(n_inputs))
    return torch.export.export(module.eval(), args, dynamic_shapes=shapes)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory):
    """``mlp`` (x FP32 [-1,4] -> y FP32 [-1,3]), ``pair`` (a FP32 [-1,2,3], b INT64 [-1,3] ->
    s FP32 [-1,3], m INT64 [-1]) and ``embed`` (ids INT64 [-1,2] in 0..4 -> e FP32 [-1,2,3])."""
    repo = tmp_path_factory.mktemp("repo")
    torch.manual_seed(0)
    write_artifact(
        repo,
        _export(Mlp(), (torch.randn(2, 4),), 1),
        ModelConfig(
            name="mlp",
            inputs=(TensorSpec("x", "FP32", (-1, 4)),),
            outputs=(TensorSpec("y", "FP32", (-1, 3)),),
            max_batch_size=8,
        ),
    )
    pair_args = (torch.randn(2, 2, 3), torch.randint(0, 9, (2, 3)))
    write_artifact(
        repo,
        _export(Pair(), pair_args, 2),
        ModelConfig(
            name="pair",
            inputs=(TensorSpec("a", "FP32", (-1, 2, 3)), TensorSpec("b", "INT64", (-1, 3))),
            outputs=(TensorSpec("s", "FP32", (-1, 3)), TensorSpec("m", "INT64", (-1,))),
            max_batch_size=8,
        ),
    )
    write_artifact(
        repo,
        _export(Embed(), (torch.zeros(2, 2, dtype=torch.int64),), 1),
        ModelConfig(
            name="embed",
            inputs=(TensorSpec("ids", "INT64", (-1, 2)),),
            outputs=(TensorSpec("e", "FP32", (-1, 2, 3)),),
            max_batch_size=8,
        ),
    )
    return repo
