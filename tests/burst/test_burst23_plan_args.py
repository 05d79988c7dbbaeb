"""``tidegate plan`` (and the gateway's planner) name a bad argument before searching: VGG-16
with ``--workers 0`` in a 1024 MB function said "no plan of vgg16 fits ... (or allow more
workers)", which sends a user after memory sizes instead of the typo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from exported_models import tensor_names  # noqa: E402
import special_models as sm  # noqa: E402

from burst.graph import build_graph  # noqa: E402
from burst.plan import PlanError  # noqa: E402
from burst.planning import PlanRequest, load_profile, model_plan  # noqa: E402


@pytest.fixture(scope="module")
def graph():
    x = torch.randn(2, *sm.input_shape("grouped"))
    return build_graph(sm.export(sm.build("grouped"), x), "grouped")


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"workers": 0}, "workers must be a positive integer, got 0"),
        ({"workers": -2}, "workers must be a positive integer, got -2"),
        ({"workers": 2, "batch": 0}, "batch must be a positive integer, got 0"),
    ],
)
def test_a_bad_argument_is_named_even_where_no_plan_would_fit(graph, bad, named):
    # a 128 MB function holds no weights: a search would say no plan fits
    request = PlanRequest(memory_mb=128, **bad)
    with pytest.raises(PlanError) as err:
        model_plan(graph, tensor_names(graph), request, load_profile())
    assert str(err.value) == named
