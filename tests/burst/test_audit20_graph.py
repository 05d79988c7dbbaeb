"""The work ``burst.graph`` counts for convs other than a plain Conv2d (session 20's audit): a
transposed conv was counted as its output's size, so the planner and ``tidegate plan`` priced
a ConvTranspose2d(64, 32, 3, stride 2) at a twentieth of its time."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import audit20_models as am  # noqa: E402

from burst.graph import GraphError, build_graph  # noqa: E402


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(module.eval(), (x,), dynamic_shapes=({0: batch},))
    graph = build_graph(program, "m")
    (node,) = [n for n in graph.nodes if "conv" in n.op]
    return node.macs


@pytest.mark.parametrize(
    "module,x",
    [
        (nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), (64, 13, 9)),
        (nn.ConvTranspose2d(8, 12, (3, 5), stride=(2, 3), groups=4), (8, 7, 6)),
        (nn.ConvTranspose1d(6, 4, 5, stride=3), (6, 11)),
        (nn.Conv1d(6, 10, 7, stride=2, dilation=3, groups=2), (6, 80)),
        (nn.Conv3d(3, 5, 3, padding=1), (3, 4, 6, 5)),
        (nn.Conv2d(8, 16, 3, padding=1, groups=4), (8, 10, 12)),
    ],
)
def test_a_convs_work_is_its_multiply_adds_per_sample(module, x):
    x = torch.randn(2, *x)
    w = module.weight.shape
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        # each input element meets Cout/groups outputs per kernel tap
        want = x[0].numel() * w[1] * math.prod(w[2:])
    else:  # each output element reads Cin/groups per kernel tap
        want = module(x)[0].numel() * math.prod(w[1:])
    assert _macs(module, x) == want


def test_control_flow_is_refused_by_name_not_by_an_objects_address():
    """It said "unsupported call target <torch._higher_order_ops.cond.CondOp object at
    0x7fe3b565c950>" (``tidegate plan``, and the burst path's 400)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        am.Branches().eval(), (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},)
    )
    with pytest.raises(GraphError) as err:
        build_graph(program, "branches")
    assert "control flow (torch.cond)" in str(err.value) and " at 0x" not in str(err.value)
