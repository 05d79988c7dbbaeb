"""The work ``burst.graph`` counts for recurrent layers (session 21's audit): an LSTM's or GRU's
output is a tuple, so its node had no output size to count and its work was 0; the performance
model priced it by its bytes alone. ``tidegate plan`` predicted the same compute for an LSTM
(2 layers of 256, 9 steps) at batch 8 as at batch 1 (4.068 ms against 4.053 ms end to end, its
57 M multiply-adds at batch 8 free; one thread runs it in 7.8 ms, 3.8 ms at batch 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from exported_models import tensor_names  # noqa: E402
import audit21_models as am  # noqa: E402

from burst.exchange import BurstUnavailable  # noqa: E402
from burst.graph import GraphError, build_graph  # noqa: E402
from burst.input_bounds import check_ids  # noqa: E402
from burst.node_work import node_works  # noqa: E402
from burst.planning import PlanRequest, load_profile, model_plan, predict_plan  # noqa: E402

torch.set_num_threads(1)


class _Rnn(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


def _graph(module: nn.Module, x: torch.Tensor):
    # a sequence-first [T, B, F] input is exported with fixed shapes (the batch is dim 0 here)
    dims = ({0: torch.export.Dim("batch", min=1, max=8)},) if module.rnn.batch_first else None
    program = torch.export.export(module.eval(), (x,), dynamic_shapes=dims)
    return build_graph(program, "m")


@pytest.mark.parametrize(
    "rnn,x,steps",
    [
        (nn.LSTM(6, 16, num_layers=2, batch_first=True), (2, 9, 6), 9),
        (nn.GRU(6, 16, batch_first=True, bidirectional=True), (2, 5, 6), 5),
        (nn.LSTM(4, 8), (7, 2, 4), 7),  # sequence first: [T, B, F]
        (nn.RNN(4, 8, batch_first=True), (2, 3, 4), 3),
    ],
)
def test_a_recurrent_layers_work_is_its_steps_times_its_weight_matrices(rnn, x, steps):
    graph = _graph(_Rnn(rnn), torch.randn(*x))
    (node,) = [n for n in graph.nodes if n.op.endswith(".input")]
    matrices = sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight"))
    assert node.macs == steps * matrices
    if rnn.batch_first:
        (work,) = [w for w in node_works(graph, 4) if w.name == node.name]
        weights = dict(rnn.named_parameters())
        ih = sum(p.numel() for name, p in weights.items() if name.startswith("weight_ih"))
        # as GEMM work (burst24): the input matrices for every sample, a step's hidden product
        # for the samples past the first (at batch 1 it is that matrix read again)
        assert work.macs == steps * (4 * ih + 3 * (matrices - ih))


def test_plan_prices_an_lstm_by_its_work():
    module = am.build("lstm", hidden=256)
    graph = build_graph(am.export(module, am.example("lstm")), "lstm")

    def stage_ms(batch: int) -> float:
        request, profile = PlanRequest(workers=1, batch=batch), load_profile()
        plan = model_plan(graph, tensor_names(graph), request, profile)
        return sum(e.mean_ms for e in predict_plan(graph, plan, request, profile).stages)

    one, eight = stage_ms(1), stage_ms(8)
    # 57 M multiply-adds at batch 8, 7 M at 1: at least the linear layers' rate; its steps and
    # the weights read every step do not grow with the batch (one thread: 1.0 ms at 1, 1.6 at 8)
    assert eight > 0.5 and eight > 1.2 * one, (one, eight)


def test_a_dynamic_sequence_is_refused_with_the_shape_its_config_shows():
    """It said "(shape [s23, s27])", the tracer's symbol names; the config says [-1, -1]."""
    module = am.build("textenc")
    program = am.export(module, am.example("textenc"), seq=True)
    with pytest.raises(
        GraphError, match=r"dynamic dimension 1 besides the batch \(shape \[-1, -1\]\)"
    ):
        build_graph(program, "textenc")


def test_token_ids_past_the_embedding_table_are_refused_before_any_invocation():
    """The master failed on them ("IndexError: index out of range in self": a 503 after a paid
    invocation); the burst path refuses them first, as a client error the gateway makes a 400."""
    graph = build_graph(am.export(am.build("textmask"), am.example("textmask")), "textmask")
    ids, mask = (x.numpy() for x in am.example("textmask", batch=2))
    check_ids(graph, ["ids", "mask"], {"ids": ids, "mask": mask * 7}, "textmask")  # mask: any
    for bad in (am.VOCAB, -1):
        ids[1, 3] = bad
        with pytest.raises(BurstUnavailable, match=rf"input 'ids': value {bad} is outside 0\.\.49"):
            check_ids(graph, ["ids", "mask"], {"ids": ids, "mask": mask}, "textmask")
        try:
            check_ids(graph, ["ids", "mask"], {"ids": ids, "mask": mask}, "textmask")
        except BurstUnavailable as exc:
            assert exc.bad_input and not exc.refused
