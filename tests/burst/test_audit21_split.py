"""Session 21's models (``audit21_models``: ViTs, text encoders, a UNet, EfficientNet- and
MobileNetV3-style blocks, a detector head, torch's own transformer layers) split every way the
burst path may split them, in process and through the fork-join master with its workers, answer
what the model answers.

nn.MultiheadAttention's in-projection makes a 4-D value with the batch third ([3, T, B, E]):
a spatial split tiled it as an image (its batch as "H") and every forced spatial plan of such a
model failed in the stitch ("Trying to create tensor with negative dimension -1: [3, 64, -1,
32]"). 4-D values with the batch elsewhere than first are not tiled now.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit21_models as am  # noqa: E402
from exported_models import exported  # noqa: E402
from test_runtime import InProcessInvoker  # noqa: E402

from burst.execute import run_plan_local  # noqa: E402
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
        diff = (g - w).abs().max().item() / max(w.abs().max().item(), 1e-12)
        assert diff <= TOLERANCE, f"{what}: relative diff {diff:.2e}"


@pytest.mark.parametrize("name", list(am.MODELS))
def test_each_model_split_every_way_equals_the_model(name):
    module, _, graph, weights = _model(name)
    for batch in (1, 3):
        xs = am.example(name, batch=batch, seed=7)
        for split, workers in (("spatial", 2), ("spatial", 4), ("output", 3), ("auto", 4)):
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


@pytest.mark.parametrize("name,split", [("patchmha", "spatial"), ("textmask", "output")])
async def test_the_fork_join_master_answers_what_the_model_does(tmp_path, name, split):
    module, program, graph, _ = _model(name)
    plan = make_plan(graph, workers=2, split=split, batch=2, transport="store")
    assert any(st.split == split for st in plan.stages)
    store = LocalDirStore(tmp_path / "store")
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    xs = am.example(name, batch=2, seed=9)
    event = {"plan_id": plan.plan_id, "request_id": "r1", "inputs": [encode_inline(x) for x in xs]}
    result = await run_master(event, InProcessInvoker(store), store)
    assert result["report"]["invocations"] > 0
    _assert_same([await receive(o, store) for o in result["outputs"]], module, xs, split)
