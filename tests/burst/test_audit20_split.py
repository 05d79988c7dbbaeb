"""Session 20's models (``audit20_models``) split every way the burst path may split them, in
process and through the fork-join master with its workers, answer what the model answers.

A positional embedding (a [1, C, H, W] weight added to a feature map) or a per-column [W] scale
in a spatially split stage failed every tile ("The size of tensor a (13) must match the size of
tensor b (20)"): a tile was given all of the weight, not its window. The planner picked exactly
that split for a wide such model (spatial x2, the whole model one stage), so every burst request
of it failed after paying for its invocations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit20_models as am  # noqa: E402
from exported_models import BUILT, exported  # noqa: E402
from test_runtime import InProcessInvoker  # noqa: E402

from burst.execute import run_plan_local  # noqa: E402
from burst.graph import build_graph, program_weights  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.runtime import reset_cache, run_master  # noqa: E402
from burst.store.local_dir import LocalDirStore  # noqa: E402
from burst.tensors import encode_inline, receive  # noqa: E402
from burst.weights import prepare_plan, worker_weights  # noqa: E402

torch.set_num_threads(1)
TOLERANCE = 1e-5  # relative to max|y|


def _model(name: str):
    return exported(am, name)


def _assert_same(got: list[torch.Tensor], module, xs, what: str) -> None:
    with torch.no_grad():
        want = torch.utils._pytree.tree_leaves(module(*xs))
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, what
        if w.is_floating_point():
            diff = (g - w).abs().max().item() / max(w.abs().max().item(), 1e-12)
            assert diff <= TOLERANCE, f"{what}: relative diff {diff:.2e}"
        else:
            assert torch.equal(g, w), what


@pytest.mark.parametrize("name", list(am.MODELS))
def test_each_model_split_every_way_equals_the_model(name):
    module, _, graph, weights = _model(name)
    for batch in (1, 3):
        xs = am.example(name, batch=batch, seed=7)
        for split, workers in (("spatial", 3), ("spatial", 4), ("output", 3), ("auto", 4)):
            plan = make_plan(graph, workers=workers, split=split, batch=batch)
            with torch.no_grad():
                got = run_plan_local(
                    graph,
                    plan,
                    weights,
                    xs,
                    slicer=lambda st, j: worker_weights(graph, st, j, weights),
                )
            _assert_same(got, module, xs, f"{split} x{workers} b{batch}")


async def _master(name: str, tmp_path: Path, plan, xs) -> list[torch.Tensor]:
    _, program, graph, _ = _model(name)
    store = LocalDirStore(tmp_path / "store")
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    event = {
        "plan_id": plan.plan_id,
        "request_id": "r1",
        "inputs": [encode_inline(x) for x in xs],
    }
    result = await run_master(event, InProcessInvoker(store), store)
    assert result["report"]["invocations"] > 0
    return [await receive(o, store) for o in result["outputs"]]


@pytest.mark.parametrize("workers,transport", [(2, "inline"), (4, "store")])
async def test_a_positional_embedding_tiles_through_the_fork_join(tmp_path, workers, transport):
    module, _, graph, _ = _model("posembed")
    plan = make_plan(graph, workers=workers, split="spatial", batch=2, transport=transport)
    assert any(st.split == "spatial" and "add" in st.nodes for st in plan.stages)
    xs = am.example("posembed", batch=2, seed=9)
    _assert_same(await _master("posembed", tmp_path, plan, xs), module, xs, f"x{workers}")


async def test_the_plan_the_planner_picks_for_a_wide_positional_embedding_runs(tmp_path):
    """The whole model as one spatial stage: the plan ``tidegate plan --workers 2`` prints."""
    module = am.build("posembed", c=48, hw=(97, 131))
    xs = am.example("posembed", batch=1, seed=9, shapes=[(3, 97, 131)])
    program = am.export(module, am.example("posembed", shapes=[(3, 97, 131)]))
    graph = build_graph(program, "posembed_w")
    BUILT[(am.__name__, "posembed_w")] = (module, program, graph, program_weights(program))
    plan = make_plan(graph, workers=2, split="auto", batch=1)
    assert [st.split for st in plan.stages] == ["spatial"]
    _assert_same(await _master("posembed_w", tmp_path, plan, xs), module, xs, "auto x2")
