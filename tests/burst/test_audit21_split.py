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
from exported_models import (  # noqa: E402
    assert_same,
    check_split_every_way,
    exported,
    run_through_master,
)

from burst.plan import make_plan  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(am.MODELS))
def test_each_model_split_every_way_equals_the_model(name):
    ways = (("spatial", 2), ("spatial", 4), ("output", 3), ("auto", 4))
    check_split_every_way(am, name, (1, 3), ways)


@pytest.mark.parametrize("name,split", [("patchmha", "spatial"), ("textmask", "output")])
async def test_the_fork_join_master_answers_what_the_model_does(tmp_path, name, split):
    module, program, graph, _ = exported(am, name)
    plan = make_plan(graph, workers=2, split=split, batch=2, transport="store")
    assert any(st.split == split for st in plan.stages)
    xs = am.example(name, batch=2, seed=9)
    got = await run_through_master(program, graph, plan, xs, tmp_path / "store")
    with torch.no_grad():
        assert_same(got, module(*xs), split)
