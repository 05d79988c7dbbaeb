"""The plan-level guard: where the profile measured this model's split plans slower than the
model predicts (enough that one function wins), the latency plan is the whole model in one
function; where splitting still wins, or one function does not fit its memory, it splits."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.plan import Split  # noqa: E402
from burst.planning import (  # noqa: E402
    Objective,
    PlanRequest,
    choose_stages,
    load_profile,
    perf_model,
)
from policies.plan_guard import fits, no_slower_than_serial  # noqa: E402
from policies.planner import Limits, PlanChoice  # noqa: E402
from policies.profile import ComputeFit, ModelTimes, Profile  # noqa: E402

torch.set_num_threads(1)
WORKERS = 3


@pytest.fixture(scope="module")
def graph():
    from burst.graph import build_graph

    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"))
    return build_graph(sm.export(model, x), "grouped")


def _profile(graph, plan_error: dict[int, float]) -> Profile:
    """The reference profile on a core 1000x slower (splitting pays even for this small
    model), with this model's node times and the given measured plan errors."""
    base = load_profile()
    rates = {f: r * 1000 for f, r in base.compute.ms_per_gmac.items()}
    slow = dataclasses.replace(base, compute=ComputeFit(rates, base.compute.fixed_ms_per_node))
    node_ms = {n.name: slow.compute.ms(n.op, n.macs) for n in graph.nodes}
    times = ModelTimes(tuple(graph.input_shapes[0]), node_ms, plan_error=plan_error)
    return slow.with_model(graph.model, times)


def _splits(choices) -> int:
    return sum(1 for c in choices if c.split is not Split.SERIAL)


def test_a_split_that_wins_by_the_profile_is_kept(graph):
    request = PlanRequest(workers=WORKERS)
    assert _splits(choose_stages(graph, request, _profile(graph, {}))) > 0
    # measured as predicted on both sides: still a split
    assert _splits(choose_stages(graph, request, _profile(graph, {1: 1.0, 2: 1.0}))) > 0


def test_a_split_measured_slower_than_one_function_is_not_chosen(graph):
    request = PlanRequest(workers=WORKERS)
    # this model's split plans measured at 3x their prediction, one function as predicted
    choices = choose_stages(graph, request, _profile(graph, {1: 1.0, 2: 3.0}))
    assert _splits(choices) == 0
    assert [n for c in choices for n in c.nodes] == [n.name for n in graph.nodes]
    # the cost objective is not changed by the guard (its SLO decides)
    cheap = PlanRequest(workers=WORKERS, objective=Objective.COST, slo_ms=1e9)
    assert choose_stages(graph, cheap, _profile(graph, {1: 1.0, 2: 3.0})) == choose_stages(
        graph, cheap, _profile(graph, {})
    )


def test_the_guard_keeps_a_split_when_one_function_does_not_fit(graph):
    request = PlanRequest(workers=WORKERS)
    profile = _profile(graph, {1: 1.0, 2: 3.0})
    model = perf_model(graph, request, profile)
    from burst.candidates import build_candidates

    cands = build_candidates(graph, WORKERS, 1)
    serial = sorted((c for c in cands if c.split == "serial"), key=lambda c: c.start)
    split = next(c for c in cands if c.split != "serial")
    rest = [c for c in serial if c.end <= split.start or c.start >= split.end]
    stages = sorted([*rest, split], key=lambda c: c.start)
    choice = PlanChoice(tuple(stages), model.predict(stages))
    tight = Limits(worker_weight_bytes=1 << 40, master_weight_bytes=0)
    assert not fits(serial, tight)
    kept = no_slower_than_serial(model, choice, serial, tight, split_error=3.0)
    assert kept is choice
    roomy = Limits(worker_weight_bytes=1 << 40, master_weight_bytes=1 << 40)
    guarded = no_slower_than_serial(model, choice, serial, roomy, split_error=100.0)
    assert all(c.split == "serial" for c in guarded.stages)


def test_plan_errors_survive_the_profile_json(graph):
    profile = _profile(graph, {1: 0.97, 2: 1.12, 4: 1.3})
    again = Profile.from_json(json.loads(json.dumps(profile.to_json())))
    times = again.models[graph.model]
    assert times.plan_error == {1: 0.97, 2: 1.12, 4: 1.3}
    assert (times.error_at(1), times.error_at(3), times.error_at(8)) == (0.97, 1.12, 1.3)
    # an older profile has none: no correction either side
    assert ModelTimes((1, 3, 8, 8), {}).error_at(2) == 1.0
    only_serial = ModelTimes((1, 3, 8, 8), {}, plan_error={1: 0.9})
    assert only_serial.error_at(2) == 1.0
