"""The JSON IR of an exported program: faithful, serialisable, and runnable op by op."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.execute import run_plan_local  # noqa: E402
from burst.graph import Graph, GraphError, build_graph, program_weights, run_graph  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.weights import worker_weights  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def grouped():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"))
    return model, sm.export(model, x), x


def test_ir_survives_json_and_runs_bit_identical(grouped):
    model, program, x = grouped
    graph = build_graph(program, "grouped")
    again = Graph.from_dict(json.loads(json.dumps(graph.to_dict())))
    y = run_graph(again, [x], program_weights(program))[0]
    with torch.no_grad():
        assert torch.equal(y, model(x))
    assert again.inputs == graph.inputs and again.input_shapes[0] == [-1, 3, 30, 30]
    assert [n.op for n in again.nodes] == [n.op for n in graph.nodes]


def test_nodes_carry_shapes_macs_and_weight_bytes(grouped):
    _, program, _ = grouped
    graph = build_graph(program, "grouped")
    convs = [n for n in graph.nodes if n.op == "aten.conv2d.default"]
    stem = convs[0]
    assert stem.shape == [-1, 16, 30, 30] and stem.dtype == "float32"
    assert stem.macs == 16 * 30 * 30 * 3 * 3 * 3  # per sample
    assert stem.weight_bytes == (16 * 3 * 3 * 3 + 16) * 4
    assert set(stem.weights) == {"stem.weight", "stem.bias"}
    fc = next(n for n in graph.nodes if n.op == "aten.linear.default")
    assert fc.macs == 24 * 10
    assert sum(w["bytes"] for w in graph.weights.values()) == sum(
        t.numel() * t.element_size() for t in program.state_dict.values()
    )


def test_tuple_ops_are_folded_with_their_getitem(grouped):
    model, program, x = grouped
    decomposed = program.run_decompositions()
    graph = build_graph(decomposed, "grouped")
    ops = [n.op for n in graph.nodes]
    assert "getitem" not in ops
    bn = [n for n in graph.nodes if n.op == "aten._native_batch_norm_legit_no_training.default"]
    assert bn and all(n.item == 0 and n.shape[1] == 24 for n in bn)
    weights = program_weights(decomposed)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(run_graph(graph, [x], weights)[0], ref)
        # the decomposed ops (convolution, bn-with-stats) still split spatially
        plan = make_plan(graph, workers=4, split="spatial", batch=2)
        assert any(s.split == "spatial" and s.workers == 4 for s in plan.stages)
        y = run_plan_local(
            graph, plan, weights, [x], slicer=lambda st, j: worker_weights(graph, st, j, weights)
        )[0]
    assert (y - ref).abs().max() <= 1e-5 * ref.abs().max()


class _Odd(nn.Module):
    """An op the partitioner knows nothing about (cumsum over channels) between convs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.b(torch.cumsum(torch.relu(self.a(x)), dim=1) * 0.1)


def test_unknown_ops_run_serially_on_the_master():
    model = _Odd().eval()
    x = torch.randn(2, 3, 20, 20)
    program = sm.export(model, x)
    graph = build_graph(program, "odd")
    weights = program_weights(program)
    plan = make_plan(graph, workers=4, split="spatial", batch=2)
    where = {graph.node(n).op: s.split for s in plan.stages for n in s.nodes}
    assert where["aten.cumsum.default"] == "serial"
    assert where["aten.conv2d.default"] == "spatial"
    with torch.no_grad():
        y = run_plan_local(graph, plan, weights, [x])[0]
        ref = model(x)
    assert (y - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_malformed_ir_is_a_clear_error():
    with pytest.raises(GraphError, match="malformed graph IR"):
        Graph.from_dict({"model": "m", "inputs": []})
