"""Stage candidates describe exactly the stages they become, and the planner's choice on a real
small model is optimal against brute force over every plan of its candidates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.candidates import build_candidates, choices_of, stage_candidate  # noqa: E402
from burst.graph import build_graph  # noqa: E402
from burst.plan import Split, StageChoice, build_stage, make_plan  # noqa: E402
from burst.planning import PlanRequest, load_profile, perf_model  # noqa: E402
from policies.planner import Limits, cheapest_meeting_slo, latency_optimal  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def graph():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"))
    return build_graph(sm.export(model, x), "grouped")


def test_candidates_match_the_stages_built_from_them(graph):
    cands = build_candidates(graph, 4, batch=2)
    assert {c.split for c in cands} == {"serial", "spatial", "output"}
    for c in cands:
        if c.split == "serial":
            continue
        (choice,) = choices_of(graph, [c])
        st = build_stage(graph, choice, 0, 2)
        again = stage_candidate(st, c.start, c.end)
        assert again == c, f"{c.split} x{c.workers} over {c.nodes[0]}..{c.nodes[-1]}"


def _paths(cands, end):
    by_start: dict[int, list] = {}
    for c in cands:
        by_start.setdefault(c.start, []).append(c)

    def walk(p):
        if p == end:
            yield []
            return
        for c in by_start.get(p, []):
            for rest in walk(c.end):
                yield [c] + rest

    return walk(0)


def test_planner_is_optimal_on_a_real_model(graph):
    request = PlanRequest(workers=3, batch=1)
    model = perf_model(graph, request, load_profile())
    cands = build_candidates(graph, 3, batch=1)
    limits = Limits(10**12, 10**12)
    plans = [(p, model.predict(p)) for p in _paths(cands, len(graph.nodes))]
    assert len(plans) > 100
    fastest = latency_optimal(model, cands, limits)
    assert fastest.prediction.mean_ms == pytest.approx(min(pr.mean_ms for _, pr in plans))
    slo = sorted(pr.p99_ms for _, pr in plans)[len(plans) // 4]
    cheapest = cheapest_meeting_slo(model, cands, limits, slo, 0.99)
    best = min(pr.cost_usd for _, pr in plans if pr.p99_ms <= slo)
    assert cheapest.prediction.cost_usd == pytest.approx(best)
    # and the plan built from the choice predicts the same
    plan = make_plan(graph, workers=3, choices=choices_of(graph, list(cheapest.stages)))
    assert plan.stages and all(
        s.split in (Split.SERIAL, Split.SPATIAL, Split.OUTPUT) for s in plan.stages
    )


def test_serial_choices_merge_into_one_stage(graph):
    names = [n.name for n in graph.nodes]
    plan = make_plan(graph, workers=2, choices=[StageChoice(Split.SERIAL, (n,)) for n in names])
    assert len(plan.stages) == 1 and plan.stages[0].nodes == names
