"""Stage candidates describe exactly the stages they become, and the planner's choice on a real
small model is optimal against brute force over every plan of its candidates."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst import candidates  # noqa: E402
from burst.candidates import build_candidates, choices_of, stage_candidate  # noqa: E402
from burst.packing import with_pack_bytes  # noqa: E402
from burst.graph import build_graph  # noqa: E402
from burst.plan import Split, StageChoice, build_stage, make_plan  # noqa: E402
from burst.planning import PlanRequest, load_profile, perf_model  # noqa: E402
from policies.perf import percentile_ms  # noqa: E402
from policies.planner import Limits, cheapest_meeting_slo, latency_optimal  # noqa: E402
from tests.support.plan_paths import all_plans  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def graph():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"))
    return build_graph(sm.export(model, x), "grouped")


@pytest.mark.parametrize("workers", [2, 4])
def test_candidates_match_the_stages_built_from_them(graph, workers):
    cands = build_candidates(graph, workers, batch=2)
    assert {c.split for c in cands} == {"serial", "spatial", "output"}
    # two-worker plans also try leg 0 (the master's) with more than an even share
    assert any(c.lead for c in cands) == (workers == 2)
    for c in cands:
        if c.split == "serial":
            continue
        (choice,) = choices_of(graph, [c])
        st = build_stage(graph, choice, 0, 2)
        again = dataclasses.replace(stage_candidate(st, c.start, c.end), lead=choice.lead)
        again = with_pack_bytes(graph, st, again)  # its convs' packed copies, per leg
        assert again == c, f"{c.split} x{c.workers} over {c.nodes[0]}..{c.nodes[-1]}"
        if c.lead:
            assert st.leg_macs[0] > st.leg_macs[1]


def _leaning_profile():
    """The reference profile with the master's legs measured faster than the workers' (as
    here): lead variants then pay, and the search must weigh them."""
    profile = load_profile()
    slow = dict(profile.split_slowdown)
    for kind in ("spatial", "output"):
        slow[f"{kind}/master"] = {2: 0.8}
    return dataclasses.replace(profile, split_slowdown=slow)


@dataclasses.dataclass
class _Totals:
    mean_ms: float
    p99_ms: float
    cost_usd: float


def _totals(model, stages) -> _Totals:
    """What the search optimises (mean, the p99 it tests, cost) without ``predict``'s median
    (a bisection per plan: minutes over 20k plans)."""
    total = model.fixed()
    for c in stages:
        total = total + model.stage(c)
    return _Totals(total.mean_ms, percentile_ms(total.mean_ms, total.var_ms2, 0.99), total.cost_usd)


@pytest.mark.parametrize("workers", [2, 3])
def test_planner_is_optimal_on_a_real_model(graph, workers, monkeypatch):
    # one lead variant per split: brute force over all three is 751k plans (20k with one)
    monkeypatch.setattr(candidates, "LEAD_STEPS", (0.3,))
    request = PlanRequest(workers=workers, batch=1)
    profile = _leaning_profile() if workers == 2 else load_profile()
    model = perf_model(graph, request, profile)
    cands = build_candidates(graph, workers, batch=1)
    limits = Limits(10**12, 10**12)
    plans = [(p, _totals(model, p)) for p in all_plans(cands, len(graph.nodes))]
    assert len(plans) > 100
    fastest = latency_optimal(model, cands, limits)
    assert fastest.prediction.mean_ms == pytest.approx(min(pr.mean_ms for _, pr in plans))
    slo = sorted(pr.p99_ms for _, pr in plans)[len(plans) // 4]
    cheapest = cheapest_meeting_slo(model, cands, limits, slo, 0.99)
    best = min(pr.cost_usd for _, pr in plans if pr.p99_ms <= slo)
    assert cheapest.prediction.cost_usd == pytest.approx(best)
    # and the plan built from the choice predicts the same
    plan = make_plan(graph, workers=workers, choices=choices_of(graph, list(cheapest.stages)))
    assert plan.stages and all(
        s.split in (Split.SERIAL, Split.SPATIAL, Split.OUTPUT) for s in plan.stages
    )


def test_serial_choices_merge_into_one_stage(graph):
    names = [n.name for n in graph.nodes]
    plan = make_plan(graph, workers=2, choices=[StageChoice(Split.SERIAL, (n,)) for n in names])
    assert len(plan.stages) == 1 and plan.stages[0].nodes == names
