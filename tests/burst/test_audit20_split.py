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
from exported_models import (  # noqa: E402
    BUILT,
    assert_same,
    check_split_every_way,
    exported,
    run_through_master,
)

from burst.graph import build_graph, program_weights  # noqa: E402
from burst.plan import make_plan  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(am.MODELS))
def test_each_model_split_every_way_equals_the_model(name):
    ways = (("spatial", 3), ("spatial", 4), ("output", 3), ("auto", 4))
    check_split_every_way(am, name, (1, 3), ways)


async def _master(name: str, tmp_path: Path, plan, xs):
    _, program, graph, _ = exported(am, name)
    return await run_through_master(program, graph, plan, xs, tmp_path / "store")


@pytest.mark.parametrize("workers,transport", [(2, "inline"), (4, "store")])
async def test_a_positional_embedding_tiles_through_the_fork_join(tmp_path, workers, transport):
    module, _, graph, _ = exported(am, "posembed")
    plan = make_plan(graph, workers=workers, split="spatial", batch=2, transport=transport)
    assert any(st.split == "spatial" and "add" in st.nodes for st in plan.stages)
    xs = am.example("posembed", batch=2, seed=9)
    got = await _master("posembed", tmp_path, plan, xs)
    with torch.no_grad():
        assert_same(got, module(*xs), f"x{workers}")


async def test_the_plan_the_planner_picks_for_a_wide_positional_embedding_runs(tmp_path):
    """The whole model as one spatial stage: the plan ``tidegate plan --workers 2`` prints."""
    module = am.build("posembed", c=48, hw=(97, 131))
    xs = am.example("posembed", batch=1, seed=9, shapes=[(3, 97, 131)])
    program = am.export(module, am.example("posembed", shapes=[(3, 97, 131)]))
    graph = build_graph(program, "posembed_w")
    BUILT[(am.__name__, "posembed_w")] = (module, program, graph, program_weights(program))
    plan = make_plan(graph, workers=2, split="auto", batch=1)
    assert [st.split for st in plan.stages] == ["spatial"]
    got = await _master("posembed_w", tmp_path, plan, xs)
    with torch.no_grad():
        assert_same(got, module(*xs), "auto x2")
